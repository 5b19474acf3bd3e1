// `haste bench train`: the output layer's training step (forward, loss, backward, optimizer
// update) on synthetic batches, HASTE against our dense output layer in the same run (issue 6
// items 3 and 4), optionally beside the PyTorch figures of tools/anchor_step.py from the same
// device call. Writes DIR/train-<device>-<yyyymmdd>.json (DESIGN.md 12) and prints a table.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <haste/device.hpp>
#include <haste/error.hpp>
#include <haste/train_bench.hpp>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "util/result_file.hpp"

namespace haste::cli {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

struct Options {
  std::string shapes = "256,768,670091,64,32;256,768,2812281,32,32";  // B,d,L,k,g;...
  std::vector<double> head_fractions = {0.0, 0.1};
  std::vector<int64_t> scale_labels;  // --labels: the scale mode's L values
  int64_t scale_k = 32;
  bool dense = true;
  int runs = 50, scale_runs = 10;
  std::string optimizer = "adamw";
  double lr = 1e-3;
  std::string anchor, commit = "unknown", results = "bench/results";
  std::vector<int> gpus;  // --gpus: also run every case label-sharded over these GPU counts
};

std::vector<TrainBenchCase> parse_shapes(const std::string& text) {
  std::vector<TrainBenchCase> out;
  std::stringstream list(text);
  std::string item;
  while (std::getline(list, item, ';')) {
    TrainBenchCase c;
    check(std::sscanf(item.c_str(), "%ld,%ld,%ld,%ld,%ld", &c.B, &c.d, &c.L, &c.k, &c.g) == 5,
          "bench train: shape '{}' is not B,d,L,k,g", item);
    out.push_back(c);
  }
  return out;
}

// Every case of one shape: HASTE at each head fraction, then the dense layer.
// The case on one GPU without NCCL, then on each --gpus count through NCCL.
void add_gpu_counts(const TrainBenchCase& c, const Options& o, std::vector<TrainBenchCase>& out) {
  out.push_back(c);
  for (int gpus : o.gpus) {
    TrainBenchCase sharded = c;
    sharded.gpus = gpus;
    out.push_back(sharded);
  }
}

void add_cases(const TrainBenchCase& shape, const Options& o, std::vector<TrainBenchCase>& out) {
  for (double fraction : o.head_fractions) {
    TrainBenchCase c = shape;
    c.impl = "haste";
    c.H = static_cast<int64_t>(std::ceil(fraction * static_cast<double>(shape.L)));
    add_gpu_counts(c, o, out);
  }
  if (o.dense) {
    TrainBenchCase c = shape;
    c.impl = "dense";
    c.H = shape.L;
    add_gpu_counts(c, o, out);
  }
}

Json shape_json(const TrainBenchCase& c) {
  return {{"B", c.B}, {"d", c.d}, {"L", c.L}, {"k", c.k}, {"g", c.g}, {"H", c.H}};
}

bool same_shape(const Json& a, const Json& b) {
  for (const char* key : {"B", "d", "L", "k", "g"}) {
    if (a.at(key) != b.at(key)) return false;
  }
  return true;
}

// The row of `impl` at the same B, d, L, k, g, GPU count and communication, or null.
const Json* find_row(const Json& rows, const Json& like, const std::string& impl) {
  for (const Json& row : rows) {
    if (row["impl"] == impl && same_shape(row["shape"], like["shape"]) &&
        row.contains("median_ms") && row.value("gpus", Json()) == like.value("gpus", Json()) &&
        row.value("comm", Json()) == like.value("comm", Json()))
      return &row;
  }
  return nullptr;
}

// Adds to each HASTE row its speed and memory against the dense rows of the same shape.
void add_ratios(Json& rows) {
  for (Json& row : rows) {
    if (row["impl"] != "haste" || !row.contains("median_ms")) continue;
    for (const std::string name : {"dense", "torch_dense"}) {
      const Json* other = find_row(rows, row, name);
      if (!other) continue;
      row[fmt::format("speedup_vs_{}", name)] =
          other->at("median_ms").get<double>() / row["median_ms"].get<double>();
      row[fmt::format("memory_vs_{}", name)] =
          row["output_layer_bytes"].get<double>() / other->at("output_layer_bytes").get<double>();
    }
  }
}

Json result_json(const TrainBenchResult& r) {
  Json row = {{"shape", shape_json(r.bench_case)}, {"impl", r.bench_case.impl}, {"op", "step"}};
  // DESIGN.md 12's "gpus": the one-GPU layer is 1 GPU without NCCL ("comm": "none").
  row["gpus"] = std::max(r.bench_case.gpus, 1);
  row["comm"] = r.bench_case.gpus > 0 ? "nccl" : "none";
  if (!r.error.empty()) {
    row["error"] = r.error;
    return row;
  }
  Json parts = Json::object();
  for (const auto& [name, bytes] : r.memory_parts) parts[name] = bytes;
  row.update({{"median_ms", r.median_ms},
              {"p10_ms", r.p10_ms},
              {"p90_ms", r.p90_ms},
              {"runs", r.runs},
              {"forward_backward_ms", r.forward_backward_ms},
              {"update_ms", r.update_ms},
              {"steps_per_s", 1e3 / r.median_ms},
              {"peak_mem_bytes", r.peak_mem_bytes},
              {"output_layer_bytes", r.output_layer_bytes},
              {"memory", parts},
              {"loss", r.loss}});
  if (r.dst_ms > 0) row["dst_ms"] = r.dst_ms;
  if (r.dst_gradient_ms > 0) row["dst_gradient_ms"] = r.dst_gradient_ms;
  return row;
}

// anchor_step.py's JSON lines (its first line is the device name), marked with their source.
void add_anchor_rows(const std::string& path, Json& rows) {
  std::ifstream in(path);
  check(in.good(), "bench train: cannot read the anchor file '{}'", path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line.front() != '{') continue;
    Json row = Json::parse(line);
    row["source"] = "shared/tools/anchor_step.py (PyTorch, same device call)";
    row["gpus"] = 1;  // one GPU, no collectives: compared with the one-GPU rows
    row["comm"] = "none";
    rows.push_back(row);
  }
}

void print_table(const Json& rows) {
  fmt::print(
      "\n{:>9} {:>3} {:>3} {:>11} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>8} {:>7} {:>7} {:>7} "
      "{:>8} {:>8}\n",
      "L", "k", "g", "impl", "H", "ms", "fb ms", "upd ms", "steps/s", "peak GB", "layer GB",
      "x dense", "x torch", "mem/dns", "dst ms", "rigl ms");
  for (const Json& row : rows) {
    const Json& s = row["shape"];
    std::string impl = row["impl"].get<std::string>();
    if (row.value("comm", "") == "nccl") impl += fmt::format(" {}gpu", row["gpus"].get<int>());
    fmt::print("{:>9} {:>3} {:>3} {:>11} {:>8} ", s["L"].get<int64_t>(), s["k"].get<int64_t>(),
               s["g"].get<int64_t>(), impl,
               s.contains("H") ? fmt::format("{}", s["H"].get<int64_t>()) : "-");
    if (row.contains("error")) {
      fmt::print("error: {}\n", row["error"].get<std::string>());
      continue;
    }
    auto number = [&](const char* key, double scale, const char* format) {
      return row.contains(key) ? fmt::format(fmt::runtime(format), row[key].get<double>() * scale)
                               : std::string("-");
    };
    fmt::print(
        "{:>8} {:>7} {:>7} {:>7} {:>7} {:>8} {:>7} {:>7} {:>7} {:>8} {:>8}\n",
        number("median_ms", 1, "{:.3f}"), number("forward_backward_ms", 1, "{:.3f}"),
        number("update_ms", 1, "{:.3f}"), number("steps_per_s", 1, "{:.1f}"),
        number("peak_mem_bytes", 1e-9, "{:.2f}"), number("output_layer_bytes", 1e-9, "{:.2f}"),
        number("speedup_vs_dense", 1, "{:.2f}"), number("speedup_vs_torch_dense", 1, "{:.2f}"),
        number("memory_vs_dense", 1, "{:.3f}"), number("dst_ms", 1, "{:.1f}"),
        number("dst_gradient_ms", 1, "{:.1f}"));
  }
}

// The command line that reproduces the run (recorded in the JSON).
std::string command_line(const Options& o) {
  std::string command = fmt::format("haste bench train --shapes '{}' --head-fractions {}", o.shapes,
                                    fmt::join(o.head_fractions, ","));
  if (!o.scale_labels.empty()) {
    command += fmt::format(" --labels {} --scale-k {} --scale-runs {}",
                           fmt::join(o.scale_labels, ","), o.scale_k, o.scale_runs);
  }
  if (!o.dense) command += " --no-dense";
  if (!o.gpus.empty()) command += fmt::format(" --gpus {}", fmt::join(o.gpus, ","));
  command += fmt::format(" --runs {} --optimizer {} --lr {}", o.runs, o.optimizer, o.lr);
  if (!o.anchor.empty()) command += " --anchor " + o.anchor;
  return command;
}

void run(const Options& o) {
  const GpuInventory inventory = detect_gpus();
  check(!inventory.gpus.empty(), "bench train needs a GPU: {}", inventory.unavailable_reason);
  TrainBenchOptions bench;
  bench.optimizer.kind = parse_optimizer_kind(o.optimizer);
  bench.optimizer.lr = o.lr;
  bench.optimizer.validate();

  std::vector<TrainBenchCase> cases;
  for (const TrainBenchCase& shape : parse_shapes(o.shapes)) add_cases(shape, o, cases);
  const size_t scale_begin = cases.size();
  for (int64_t L : o.scale_labels) {
    TrainBenchCase shape{"", 256, 768, L, 0, 32, o.scale_k};
    add_cases(shape, o, cases);
  }
  Json rows = Json::array();
  for (size_t i = 0; i < cases.size(); ++i) {
    const TrainBenchCase& c = cases[i];
    fmt::print("{} B={} d={} L={} H={} k={} g={} gpus={} ...\n", c.impl, c.B, c.d, c.L, c.H, c.k,
               c.g, c.gpus > 0 ? fmt::format("{} (NCCL)", c.gpus) : "1");
    std::fflush(stdout);
    bench.runs = i >= scale_begin ? o.scale_runs : o.runs;
    const TrainBenchResult result = run_train_bench(c, bench);
    Json row = result_json(result);
    if (i >= scale_begin) row["mode"] = "scale";
    rows.push_back(row);
    for (const auto& [name, bytes] : result.memory_parts) {
      fmt::print("  {:<40} {:>10.3f} GB\n", name, static_cast<double>(bytes) * 1e-9);
    }
    if (!result.error.empty()) fmt::print("  error: {}\n", result.error);
  }
  if (!o.anchor.empty()) add_anchor_rows(o.anchor, rows);
  add_ratios(rows);

  const std::string device = inventory.gpus.front().name;
  // Runs over several GPU counts are the scaling measurement (issue 10), kept apart.
  const std::string bench_name = o.gpus.empty() ? "train" : "scale";
  Json json = {{"bench", bench_name},
               {"device", device},
               {"commit", o.commit},
               {"date", util::utc_now("%Y-%m-%d")},
               {"command", command_line(o)},
               {"optimizer", bench.optimizer.to_json()},
               {"positives_per_row", bench.positives},
               {"rows", rows}};
  print_table(rows);
  fs::create_directories(o.results);
  const fs::path out =
      fs::path(o.results) /
      fmt::format("{}-{}-{}.json", bench_name, util::device_slug(device), util::utc_now("%Y%m%d"));
  std::ofstream(out) << json.dump(2) << "\n";
  fmt::print("\nwrote {}\n", out.string());
}

}  // namespace

void add_bench_train(CLI::App& bench) {
  auto o = std::make_shared<Options>();
  CLI::App* cmd = bench.add_subcommand(
      "train", "Time the output layer's training step (HASTE vs dense) on synthetic batches");
  cmd->add_option("--shapes", o->shapes, "Shapes B,d,L,k,g separated by ';'")
      ->capture_default_str();
  cmd->add_option("--head-fractions", o->head_fractions,
                  "HASTE rows: head labels as fractions of L (one row each)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--labels", o->scale_labels,
                  "Scale mode: also run these L (B = 256, d = 768, g = 32, k = --scale-k)")
      ->delimiter(',');
  cmd->add_option("--scale-k", o->scale_k, "Fan-in of the scale mode")->capture_default_str();
  cmd->add_flag("!--no-dense", o->dense, "Skip the dense output layer rows");
  cmd->add_option("--gpus", o->gpus,
                  "Also run every case label-sharded over these GPU counts through NCCL (rows "
                  "with \"gpus\"; the step includes the all-reduce of dh), e.g. --gpus 1,2,4")
      ->delimiter(',');
  cmd->add_option("--runs", o->runs, "Timed steps per row")->capture_default_str();
  cmd->add_option("--scale-runs", o->scale_runs, "Timed steps per scale row")
      ->capture_default_str();
  cmd->add_option("--optimizer", o->optimizer, "adamw or sgd")->capture_default_str();
  cmd->add_option("--lr", o->lr, "Learning rate")->capture_default_str();
  cmd->add_option("--anchor", o->anchor,
                  "JSON lines of shared/tools/anchor_step.py from the same device, to compare");
  cmd->add_option("--commit", o->commit, "Commit recorded in the JSON")->capture_default_str();
  cmd->add_option("--results", o->results, "Folder for the JSON file")->capture_default_str();
  cmd->callback([o] { run(*o); });
}

}  // namespace haste::cli
