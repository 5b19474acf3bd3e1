// `haste predict`: top-k labels per row from a checkpoint, written as a prediction file that
// `haste eval` reads, in the original label ids; optionally scored against the true labels.
#include <fmt/format.h>
#include <omp.h>

#include <chrono>
#include <filesystem>
#include <haste/checkpoint.hpp>
#include <haste/dataset.hpp>
#include <haste/error.hpp>
#include <haste/featurize.hpp>
#include <haste/metrics.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli_common.hpp"
#include "commands.hpp"
#include "data/text_io.hpp"

namespace haste::cli {
namespace {

namespace fs = std::filesystem;

struct PredictArgs {
  fs::path model;
  fs::path input;
  std::optional<fs::path> input_labels;
  fs::path out;
  int k = kMaxK;
  bool raw = false;
  bool eval = false;
  std::optional<fs::path> train;
  std::optional<fs::path> train_labels;
  bool json = false;
  bool no_cache = false;
  int threads = 0;
};

// The rows to predict for, with their true labels when the input has them.
struct Inputs {
  Dataset data;
  bool has_labels = false;
};

Inputs read_inputs(const PredictArgs& args, const Checkpoint& checkpoint) {
  ReadOptions options;
  options.use_cache = !args.no_cache;
  if (args.raw) {
    std::optional<Featurizer> featurizer = checkpoint.featurizer();
    check(featurizer.has_value(),
          "{}: the checkpoint holds no featurizer, so --raw text cannot be turned into features; "
          "train with --vocabulary VOCAB.json (from haste data featurize --save-vocab)",
          checkpoint.file().path().string());
    FeaturizedText text = featurizer->transform(args.input, checkpoint.model_shape().num_labels);
    const bool has_labels = text.data.labels.nnz() > 0;
    return {std::move(text.data), has_labels};
  }
  const bool npy = args.input.extension() == ".npy";
  if (args.input_labels || (!npy && header_fields(args.input) == 3)) {
    return {read_dataset(args.input, args.input_labels, options), true};
  }
  // Features alone: a "N F" matrix file or dense .npy rows.
  Inputs inputs;
  if (npy) {
    inputs.data.dense = read_npy(args.input);
  } else {
    inputs.data.features = read_xc_matrix(args.input, options);
  }
  inputs.data.labels.rows =
      inputs.data.dense.cols > 0 ? inputs.data.dense.rows : inputs.data.features.rows;
  inputs.data.labels.indptr.assign(static_cast<size_t>(inputs.data.labels.rows) + 1, 0);
  return inputs;
}

// Puts the inputs into the model's feature and label spaces (a test file may have been written
// with a smaller F or L than the training set's).
void conform(Dataset& data, const ModelShape& shape, const fs::path& input) {
  check(data.dense.cols > 0 ? !shape.sparse_input : shape.sparse_input,
        "{} has {} features but the model was trained on {} ones", input.string(),
        data.dense.cols > 0 ? "dense" : "sparse", shape.sparse_input ? "sparse" : "dense");
  check(data.num_features() <= shape.input_dim && data.num_labels() <= shape.num_labels,
        "{} has {} features and {} labels; the model knows only {} and {}", input.string(),
        data.num_features(), data.num_labels(), shape.input_dim, shape.num_labels);
  check(data.dense.cols == 0 || data.dense.cols == shape.input_dim,
        "{} has {} dense features per row; the model expects {}", input.string(), data.dense.cols,
        shape.input_dim);
  if (data.dense.cols == 0) data.features.cols = shape.input_dim;
  data.labels.cols = shape.num_labels;
}

// Prediction file: header "N L", then "label:logit" pairs best first (shortest decimal that
// reads back as the same float, so `haste eval` ranks exactly as the model did).
void write_predictions(const Rankings& rankings, int64_t num_labels, const fs::path& file) {
  AtomicOutput out(file);
  out.write(fmt::format("{} {}\n", rankings.rows, num_labels));
  std::string line;
  for (int64_t r = 0; r < rankings.rows; ++r) {
    line.clear();
    auto row = rankings.row(r);
    auto scores = rankings.row_scores(r);
    for (size_t i = 0; i < row.size(); ++i) {
      line += fmt::format("{}{}:{}", i ? " " : "", row[i], scores[i]);
    }
    line += '\n';
    out.write(line);
  }
  out.commit();
}

void run_predict(const PredictArgs& args) {
  if (args.threads > 0) omp_set_num_threads(args.threads);
  const auto start = std::chrono::steady_clock::now();
  Checkpoint checkpoint(args.model);
  Model model = checkpoint.load_model();
  const double load_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  Inputs inputs = read_inputs(args, checkpoint);
  conform(inputs.data, model.shape(), args.input);

  const auto predict_start = std::chrono::steady_clock::now();
  Rankings rankings = model.predict(inputs.data, args.k);
  const double predict_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - predict_start).count();
  write_predictions(rankings, model.shape().num_labels, args.out);
  fmt::print(stderr, "model loaded in {:.2f} s; {} rows predicted in {:.2f} s; wrote {}\n",
             load_seconds, rankings.rows, predict_seconds, args.out.string());

  if (!args.eval) return;
  check(inputs.has_labels,
        "--eval needs the true labels: give an XC single file, a feature file with its label "
        "file, or --raw JSON lines with \"labels\"");
  std::vector<double> propensities;
  if (args.train) {
    Dataset train = read_dataset(*args.train, args.train_labels);
    check(train.num_labels() <= model.shape().num_labels,
          "the training set {} has {} labels; the model knows only {}", args.train->string(),
          train.num_labels(), model.shape().num_labels);
    train.labels.cols = model.shape().num_labels;
    propensities = jain_propensities(train.labels);
  }
  MetricReport report = evaluate(rankings, inputs.data.labels, propensities);
  if (args.json) {
    nlohmann::ordered_json out;
    out["rows"] = report.rows;
    for (const auto& [name, value] : report.named_values()) out[name] = value;
    fmt::print("{}\n", out.dump(2));
  } else {
    print_metric_table(report);
  }
}

}  // namespace

void add_predict(CLI::App& app) {
  auto args = std::make_shared<PredictArgs>();
  CLI::App* cmd = app.add_subcommand(
      "predict",
      "Predict the top-k labels of each row with a trained model and write them as a "
      "prediction file (\"N L\" header, label:score rows, original label ids) for haste eval");
  cmd->add_option("MODEL", args->model, "Checkpoint file, or a haste train --out directory")
      ->required()
      ->check(CLI::ExistingPath);
  cmd->add_option("INPUT", args->input,
                  "Rows to predict: an XC single file, a feature file (\"N F\" header, or .npy "
                  "dense rows), or with --raw JSON lines of {\"text\": ...}")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("INPUT_LABELS", args->input_labels, "Label file of a split-format INPUT")
      ->check(CLI::ExistingFile);
  cmd->add_option("--out,-o", args->out, "Prediction file to write")->required();
  cmd->add_option("-k", args->k, "Labels per row")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  cmd->add_flag("--raw", args->raw,
                "INPUT is raw text (JSON lines), featurized with the checkpoint's vocabulary");
  cmd->add_flag("--eval", args->eval, "Also print P@k, nDCG@k (and PSP@k with --train)");
  auto* train = cmd->add_option("--train", args->train,
                                "Training set, for the propensities of PSP@k with --eval")
                    ->check(CLI::ExistingFile);
  cmd->add_option("--train-labels", args->train_labels, "Labels of a split-format --train")
      ->check(CLI::ExistingFile)
      ->needs(train);
  cmd->add_flag("--json", args->json, "With --eval: print the metrics as JSON");
  cmd->add_flag("--no-cache", args->no_cache, "Do not use or write the binary data cache");
  cmd->add_option("--threads", args->threads, "CPU threads (0: all cores)")
      ->check(CLI::NonNegativeNumber);
  cmd->footer(
      "Examples:\n"
      "  haste predict runs/debdeps data/debdeps/xc/debdeps_test.txt.xz -o pred.txt --eval\n"
      "  haste predict runs/text docs.jsonl --raw -k 10 -o pred.txt");
  cmd->callback([args] { run_predict(*args); });
}

}  // namespace haste::cli
