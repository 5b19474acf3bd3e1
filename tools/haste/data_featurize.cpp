// `haste data featurize`: raw text (JSON lines) to tf-idf features in the XC format, fitting a
// vocabulary on training text or applying a saved one to new text.
#include <haste/dataset.hpp>
#include <haste/error.hpp>
#include <haste/featurize.hpp>

#include "commands.hpp"

#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>

namespace haste::cli {
namespace {

struct FeaturizeArgs {
  std::filesystem::path input;
  std::filesystem::path out;
  std::filesystem::path vocab;       // apply this vocabulary
  std::filesystem::path save_vocab;  // fit, then save the vocabulary here
  FeaturizeOptions options;
  bool quiet = false;
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void run(const FeaturizeArgs& args) {
  auto start = std::chrono::steady_clock::now();
  const bool fitting = args.vocab.empty();
  std::optional<Featurizer> featurizer;
  if (fitting) {
    featurizer.emplace(Featurizer::fit(args.input, args.options));
    if (!args.save_vocab.empty()) featurizer->save(args.save_vocab);
  } else {
    featurizer.emplace(Featurizer::load(args.vocab));
  }
  // A fitted featurizer already has --num-labels in its L.
  FeaturizedText result =
      featurizer->transform(args.input, fitting ? 0 : args.options.num_labels, !args.quiet);
  write_xc(result.data, args.out);

  if (args.quiet) return;
  const Dataset& data = result.data;
  double seconds = seconds_since(start);
  fmt::print(stderr,
             "featurized {}: {} rows, {} features, {} labels, {:.1f} features/row, "
             "{:.2f} labels/row in {:.1f} s ({:.0f} rows/s)\n",
             args.input.string(), data.num_points(), data.num_features(), data.num_labels(),
             data.num_points() ? double(data.features.nnz()) / data.num_points() : 0.0,
             data.num_points() ? double(data.labels.nnz()) / data.num_points() : 0.0, seconds,
             data.num_points() / std::max(seconds, 1e-9));
  if (fitting && !args.save_vocab.empty()) {
    fmt::print(stderr, "vocabulary saved to {}; featurize test or new text with --vocab {}\n",
               args.save_vocab.string(), args.save_vocab.string());
  } else if (fitting) {
    fmt::print(stderr, "note: no --save-vocab, so other text cannot be featurized the same way\n");
  }
  if (result.rows_without_features > 0) {
    fmt::print(stderr, "warning: {} rows have no token of the vocabulary (empty feature rows)\n",
               result.rows_without_features);
  }
  if (result.unknown_labels_dropped > 0) {
    fmt::print(stderr,
               "warning: dropped {} labels not in the vocabulary's label names (a model trained "
               "with this vocabulary cannot predict them)\n",
               result.unknown_labels_dropped);
  }
}

}  // namespace

void add_data_featurize(CLI::App& data) {
  auto args = std::make_shared<FeaturizeArgs>();
  CLI::App* cmd = data.add_subcommand(
      "featurize",
      "Turn raw text (JSON lines: {\"text\": ..., \"labels\": [...]}) into tf-idf features in the "
      "XC format. Fit on training text and --save-vocab, then featurize test or new text with "
      "--vocab so it gets the same features");
  cmd->add_option("--input,-i", args->input, "JSON-lines file (.xz, .gz, .bz2 read as they are)")
      ->required();
  cmd->add_option("--out,-o", args->out, "Output XC file, compressed by extension")->required();
  auto* vocab =
      cmd->add_option("--vocab", args->vocab, "Apply this saved vocabulary instead of fitting one");
  auto* save = cmd->add_option("--save-vocab", args->save_vocab,
                               "Fit on the input and save the vocabulary (JSON) here");
  vocab->excludes(save);
  FeaturizeOptions& o = args->options;
  auto* min_df = cmd->add_option("--min-df", o.min_df, "Keep tokens in at least this many rows")
                     ->capture_default_str();
  auto* max_features = cmd->add_option("--max-features", o.max_features,
                                       "Keep at most this many tokens, the most frequent (0: all)")
                           ->capture_default_str();
  auto* sublinear = cmd->add_flag("--sublinear-tf", o.sublinear_tf, "tf = 1 + ln(count)");
  for (CLI::Option* fit_only : {min_df, max_features, sublinear}) vocab->excludes(fit_only);
  cmd->add_option("--num-labels", o.num_labels,
                  "Number of labels L (>= largest id + 1): give the same value for train and test");
  cmd->add_flag("--quiet,-q", args->quiet, "No progress bar or summary");
  cmd->callback([args] { run(*args); });
}

}  // namespace haste::cli
