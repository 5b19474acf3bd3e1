// `haste data split`: a seeded train/test holdout for data sets without an upstream split.
#include <fmt/format.h>

#include <filesystem>
#include <haste/dataset.hpp>
#include <haste/dataset_split.hpp>
#include <memory>
#include <optional>

#include "commands.hpp"

namespace haste::cli {
namespace {

struct SplitArgs {
  std::filesystem::path input;
  std::optional<std::filesystem::path> input_labels;
  double test_fraction = 0.3;
  uint64_t seed = 0;
  std::filesystem::path train_out;
  std::filesystem::path test_out;
  bool no_cache = false;
};

void run_split(const SplitArgs& args) {
  ReadOptions options;
  options.use_cache = !args.no_cache;
  Dataset data = read_dataset(args.input, args.input_labels, options);
  DatasetSplit split = split_dataset(data, args.test_fraction, args.seed);
  write_xc(split.train, args.train_out);
  write_xc(split.test, args.test_out);
  fmt::print("wrote {} train rows to {} and {} test rows to {} (seed {})\n",
             split.train.num_points(), args.train_out.string(), split.test.num_points(),
             args.test_out.string(), args.seed);
}

}  // namespace

void add_data_split(CLI::App& data) {
  auto args = std::make_shared<SplitArgs>();
  CLI::App* cmd = data.add_subcommand(
      "split",
      "Split a data set into train and test parts at random (seeded, the same on every "
      "machine), each keeping the original row order and the full feature and label spaces; "
      "written as XC single files (compressed by extension)");
  cmd->add_option("IN", args->input, "An XC single file, or the features of a split pair")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("IN_LABELS", args->input_labels, "Labels of a split-format input")
      ->check(CLI::ExistingFile);
  cmd->add_option("--test-fraction", args->test_fraction, "Fraction of rows for the test part")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", args->seed, "Seed of the split")->capture_default_str();
  cmd->add_option("--train-out", args->train_out, "Training part, e.g. train.txt.xz")->required();
  cmd->add_option("--test-out", args->test_out, "Test part, e.g. test.txt.xz")->required();
  cmd->add_flag("--no-cache", args->no_cache, "Do not use or write the binary cache");
  cmd->footer(
      "Example: haste data split all.txt.xz --test-fraction 0.3 --seed 0 "
      "--train-out train.txt.xz --test-out test.txt.xz");
  cmd->callback([args] { run_split(*args); });
}

}  // namespace haste::cli
