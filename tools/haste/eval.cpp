// `haste eval`: P@k, nDCG@k, PSP@k, PSnDCG@k of a prediction file against ground truth.
#include <haste/dataset.hpp>
#include <haste/error.hpp>
#include <haste/metrics.hpp>

#include "cli_common.hpp"
#include "commands.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <memory>
#include <string>

namespace haste::cli {
namespace {

namespace fs = std::filesystem;

struct EvalArgs {
  fs::path predictions;
  fs::path truth;
  fs::path truth_labels;
  fs::path train;
  fs::path train_labels;
  double A = kDefaultPropensityA;
  double B = kDefaultPropensityB;
  bool json = false;
};

// The label matrix of a data set given as one file (single-file format, or a label file alone)
// or as a feature file and a label file.
CsrMatrix read_labels(const fs::path& first, const fs::path& labels) {
  if (!labels.empty()) return read_dataset(first, labels).labels;
  if (header_fields(first) == 2) {
    CsrMatrix matrix = read_xc_matrix(first);
    matrix.values.clear();  // a label file's values carry no meaning here
    return matrix;
  }
  return read_dataset(first).labels;  // single file; its reader reports any other header
}

// Where a label matrix came from, for error messages.
std::string describe(const fs::path& first, const fs::path& labels) {
  return labels.empty() ? first.string() : labels.string();
}

void run_eval(const EvalArgs& args) {
  CsrMatrix scores = read_xc_matrix(args.predictions);
  CsrMatrix truth = read_labels(args.truth, args.truth_labels);
  const std::string truth_name = describe(args.truth, args.truth_labels);
  check(scores.rows == truth.rows, "{} has {} rows but the ground truth {} has {}",
        args.predictions.string(), scores.rows, truth_name, truth.rows);
  check(scores.cols == truth.cols,
        "{} scores {} labels but the ground truth {} has {}; both must use one label space",
        args.predictions.string(), scores.cols, truth_name, truth.cols);

  std::vector<double> propensities;
  int64_t train_points = 0;
  if (!args.train.empty()) {
    CsrMatrix train = read_labels(args.train, args.train_labels);
    check(train.cols == truth.cols,
          "the training set {} has {} labels but the ground truth {} has {}; both must use one "
          "label space",
          describe(args.train, args.train_labels), train.cols, truth_name, truth.cols);
    propensities = jain_propensities(train, args.A, args.B);
    train_points = train.rows;
  } else {
    fmt::print(stderr,
               "note: no --train given, so PSP and PSnDCG are skipped (their propensities come "
               "from the training label frequencies)\n");
  }

  MetricReport report = evaluate(scores, truth, propensities);
  if (args.json) {
    nlohmann::ordered_json out;
    out["rows"] = report.rows;
    for (const auto& [name, value] : report.named_values()) out[name] = value;
    if (report.has_propensity_scored) {
      out["propensity_A"] = args.A;
      out["propensity_B"] = args.B;
      out["train_rows"] = train_points;
    }
    fmt::print("{}\n", out.dump(2));
  } else {
    print_metric_table(report);
    if (report.has_propensity_scored) {
      fmt::print("(PS metrics: Jain et al. propensities, A = {}, B = {}, {} training rows)\n",
                 args.A, args.B, train_points);
    }
  }
}

}  // namespace

void add_eval(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand(
      "eval",
      "Score a prediction file against ground truth: P@k, nDCG@k and, given the training set, "
      "the propensity-scored PSP@k and PSnDCG@k (Jain et al. 2016), for k = 1..5");
  cmd->footer(
      "Prediction file: the split-format matrix layout, a header \"N L\" then one line per row of "
      "\"label:score\" pairs (any order, any number; each row is ranked by score, ties going to "
      "the lower label id). See docs/formats.md.\n"
      "Ground truth and training set: a single XC file (\"N F L\" header), a feature file plus "
      "--truth-labels/--train-labels, or a lone label file (\"N L\" header). Files may be .xz, "
      ".gz or .bz2 compressed.\n"
      "PSP@k and PSnDCG@k are normalised by the best achievable value (as napkinXC and the "
      "Extreme Classification Repository do). Usual propensity parameters: -A 0.55 -B 1.5 "
      "(default), -A 0.5 -B 0.4 for Wikipedia data sets, -A 0.6 -B 2.6 for Amazon ones.\n"
      "Example: haste eval --pred pred.txt --truth test.txt --train train.txt --json");
  cmd->add_option("--pred,-p", args->predictions,
                  "Prediction file: \"N L\" header, label:score rows")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option(
         "--truth,-t", args->truth,
         "Ground truth: XC data set file, feature file (with --truth-labels) or label file")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--truth-labels", args->truth_labels,
                  "Label file of a split-format ground truth whose features are --truth")
      ->check(CLI::ExistingFile);
  cmd->add_option("--train", args->train,
                  "Training set, for label frequencies -> propensities (without it, no PS metrics)")
      ->check(CLI::ExistingFile);
  auto* train_labels = cmd->add_option("--train-labels", args->train_labels,
                                       "Label file of a split-format training set")
                           ->check(CLI::ExistingFile);
  train_labels->needs(cmd->get_option("--train"));
  cmd->add_option("-A", args->A, "Propensity parameter A")->capture_default_str();
  cmd->add_option("-B", args->B, "Propensity parameter B")->capture_default_str();
  cmd->add_flag("--json", args->json,
                "Print a JSON object instead of a table: \"rows\", \"P@1\" ... \"PSnDCG@5\" as "
                "fractions");
  cmd->callback([args] { run_eval(*args); });
}

}  // namespace haste::cli
