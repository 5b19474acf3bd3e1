// CPU training engine on a real dataset: per-epoch train time, examples/s, loss and P@1/3/5
// (and PSP@1/3/5), for model and training settings given as JSON. Used to tune the defaults of
// include/haste/model.hpp and trainer.hpp; `haste train` is the user-facing way to train.
//
//   cpu_train_bench [--train FILE] [--test FILE] [--model JSON] [--train-config JSON]
//                   [--rows N] [--out FILE]
//
// FILEs default to the bundled debdeps split; --rows keeps only the first N training rows;
// JSON arguments are objects in the format of ModelConfig / TrainConfig::to_json (missing keys
// keep their defaults). With --out, one JSON row per epoch is written there
// (DESIGN.md 12's cpu-train fields).
#include <fmt/format.h>

#include <chrono>
#include <fstream>
#include <haste/dataset.hpp>
#include <haste/error.hpp>
#include <haste/model.hpp>
#include <haste/trainer.hpp>
#include <nlohmann/json.hpp>
#include <string>

namespace {

using Json = nlohmann::json;

struct Args {
  std::string train = std::string(HASTE_SOURCE_DIR) + "/data/debdeps/xc/debdeps_train.txt.xz";
  std::string test = std::string(HASTE_SOURCE_DIR) + "/data/debdeps/xc/debdeps_test.txt.xz";
  Json model = Json::object(), train_config = Json::object();
  int64_t rows = -1;
  std::string out;
};

Args parse_args(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    haste::check(i + 1 < argc, "{} needs a value", flag);
    const std::string value = argv[++i];
    if (flag == "--train") {
      args.train = value;
    } else if (flag == "--test") {
      args.test = value;
    } else if (flag == "--model") {
      args.model = Json::parse(value);
    } else if (flag == "--train-config") {
      args.train_config = Json::parse(value);
    } else if (flag == "--rows") {
      args.rows = std::stoll(value);
    } else if (flag == "--out") {
      args.out = value;
    } else {
      haste::fail("unknown flag {}", flag);
    }
  }
  return args;
}

// The first `rows` rows of `data` (sparse features).
haste::Dataset head_rows(const haste::Dataset& data, int64_t rows) {
  haste::Dataset out;
  out.features.cols = data.features.cols;
  out.labels.cols = data.labels.cols;
  for (int64_t r = 0; r < rows; ++r) {
    out.features.append_row(data.features.row_indices(r), data.features.row_values(r));
    out.labels.append_row(data.labels.row_indices(r), {});
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) try {
  const Args args = parse_args(argc, argv);
  haste::ReadOptions read;
  read.show_progress = false;
  haste::Dataset train = haste::read_dataset(args.train, std::nullopt, read);
  if (args.rows > 0 && args.rows < train.num_points()) train = head_rows(train, args.rows);
  const haste::Dataset test = haste::read_dataset(args.test, std::nullopt, read);

  const auto model_config = haste::ModelConfig::from_json(args.model);
  const auto train_config = haste::TrainConfig::from_json(args.train_config);
  const auto build_start = std::chrono::steady_clock::now();
  haste::Model model = haste::Model::build(model_config, train);
  const double build_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - build_start).count();
  const haste::ModelSize size = model.size();
  haste::Trainer trainer(train_config, model);
  fmt::print("model {}\ntrain {}\nbuild {:.2f} s, H = {}, G = {}, output layer {:.2f} MB\n",
             model_config.to_json().dump(), train_config.to_json().dump(), build_s,
             model.shape().head_labels, model.shape().groups, size.output_layer_bytes() / 1e6);
  fmt::print("{:>5} {:>9} {:>8} {:>9} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}\n", "epoch", "loss",
             "train_s", "ex/s", "P@1", "P@3", "P@5", "PSP@1", "PSP@3", "PSP@5");
  Json rows = Json::array();
  double total_s = 0;
  trainer.fit(train, &test, [&](const haste::EpochReport& r) {
    total_s += r.train_seconds;
    const haste::MetricReport& m = *r.metrics;
    fmt::print(
        "{:>5} {:>9.4f} {:>8.2f} {:>9.0f} {:>6.2f} {:>6.2f} {:>6.2f} {:>6.2f} {:>6.2f} "
        "{:>6.2f}\n",
        r.epoch, r.mean_loss, r.train_seconds, r.examples_per_second, 100 * m.precision[0],
        100 * m.precision[2], 100 * m.precision[4], 100 * m.psp[0], 100 * m.psp[2], 100 * m.psp[4]);
    std::fflush(stdout);
    rows.push_back({{"epoch", r.epoch},
                    {"epoch_s", r.train_seconds},
                    {"train_s_total", total_s},
                    {"examples_per_s", r.examples_per_second},
                    {"loss", r.mean_loss},
                    {"metrics",
                     {{"P@1", m.precision[0]},
                      {"P@3", m.precision[2]},
                      {"P@5", m.precision[4]},
                      {"PSP@1", m.psp[0]},
                      {"PSP@3", m.psp[2]},
                      {"PSP@5", m.psp[4]}}}});
  });
  fmt::print("total train {:.2f} s (+ build {:.2f} s)\n", total_s, build_s);
  if (!args.out.empty()) {
    std::ofstream(args.out) << Json{
        {"model", model_config.to_json()},
        {"train", train_config.to_json()},
        {"output_layer_bytes", size.output_layer_bytes()},
        {"build_s", build_s},
        {"epochs", rows}}.dump(2);
  }
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
