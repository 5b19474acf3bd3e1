// `haste data synth`: power-law synthetic data with planted label clusters, streamed to disk.
#include <haste/synthetic.hpp>

#include "commands.hpp"

#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <memory>

namespace haste::cli {
namespace {

struct SynthArgs {
  SynthConfig config;
  std::filesystem::path out;
  int64_t test_rows = 0;
  std::filesystem::path test_out;
  bool quiet = false;
};

void write_one(const SynthConfig& config, const std::filesystem::path& out, bool quiet) {
  auto start = std::chrono::steady_clock::now();
  write_synthetic(config, out, !quiet);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!quiet) {
    fmt::print(stderr, "wrote {}: {} rows x {} features, {} labels in {:.1f} s ({:.0f} rows/s)\n",
               out.string(), config.rows, config.features, config.labels, seconds,
               config.rows / std::max(seconds, 1e-9));
  }
}

}  // namespace

void add_data_synth(CLI::App& data) {
  auto args = std::make_shared<SynthArgs>();
  SynthConfig& c = args->config;
  CLI::App* cmd = data.add_subcommand(
      "synth",
      "Generate a synthetic data set: Zipf label frequencies, planted label clusters that the "
      "features reveal, deterministic per seed; written in the XC single-file format "
      "(compressed by extension: .xz, .gz, .bz2)");
  cmd->add_option("--rows,-n", c.rows, "Rows (N)")->required()->check(CLI::NonNegativeNumber);
  cmd->add_option("--features,-f", c.features, "Features (F)")
      ->required()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--labels,-l", c.labels, "Labels (L); 10 million and more is fine")
      ->required()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--seed", c.seed, "Random seed: the same seed gives the same bytes")
      ->capture_default_str();
  cmd->add_option("--zipf", c.zipf, "Exponent of the label-frequency power law")
      ->capture_default_str();
  cmd->add_option("--labels-per-row", c.labels_per_row, "Mean labels per row (>= 1)")
      ->capture_default_str();
  cmd->add_option("--features-per-row", c.features_per_row, "Mean nonzero features per row")
      ->capture_default_str();
  cmd->add_option("--cluster-size", c.cluster_size, "Labels per planted cluster")
      ->capture_default_str();
  cmd->add_option("--out,-o", args->out, "Output file, e.g. train.txt.xz")->required();
  auto* test_rows = cmd->add_option(
      "--test-rows", args->test_rows,
      "Also write this many test rows: fresh rows from the same clusters (rows N.. of the stream)");
  auto* test_out = cmd->add_option("--test-out", args->test_out, "Test output file");
  test_rows->needs(test_out);
  test_out->needs(test_rows);
  cmd->add_flag("--quiet,-q", args->quiet, "No progress bar or summary");

  cmd->callback([args] {
    write_one(args->config, args->out, args->quiet);
    if (!args->test_out.empty()) {
      SynthConfig test = args->config;
      test.first_row = args->config.first_row + args->config.rows;
      test.rows = args->test_rows;
      write_one(test, args->test_out, args->quiet);
    }
  });
}

}  // namespace haste::cli
