// `haste data stats`: size, label distribution and head/tail counts of a dataset.
#include <fmt/format.h>

#include <filesystem>
#include <haste/dataset.hpp>
#include <haste/dataset_stats.hpp>
#include <memory>
#include <optional>
#include <string>

#include "commands.hpp"

namespace haste::cli {
namespace {

struct StatsArgs {
  std::filesystem::path file;
  std::optional<std::filesystem::path> labels_file;
  bool json = false;
  bool no_cache = false;
};

void run_stats(const StatsArgs& args) {
  ReadOptions options;
  options.use_cache = !args.no_cache;
  Dataset data = read_dataset(args.file, args.labels_file, options);
  DatasetStats stats = compute_stats(data);
  stats.source = args.file.string();
  if (args.labels_file) stats.source += " + " + args.labels_file->string();
  fmt::print("{}\n", args.json ? stats_json(stats) : stats_table(stats));
}

}  // namespace

void add_data_stats(CLI::App& data) {
  auto args = std::make_shared<StatsArgs>();
  CLI::App* cmd = data.add_subcommand(
      "stats",
      "Print a dataset's size and label distribution: points, features, labels (used), "
      "labels/point, features/point, distinct label sets, quantiles of positives per label, "
      "and head/tail counts");
  cmd->add_option("FILE", args->file,
                  "XC single file (header 'N F L'), or the features of a split dataset "
                  "(header 'N F', or a .npy of dense features); .xz/.gz/.bz2 read as they come")
      ->required();
  cmd->add_option("LABELS_FILE", args->labels_file,
                  "Labels of a split dataset (header 'N L', lines 'l:1 l:1')");
  cmd->add_flag("--json", args->json, "Print one JSON object instead of a table");
  cmd->add_flag("--no-cache", args->no_cache,
                "Parse the text even if a binary cache of it exists, and write no cache "
                "(the cache lives in $HASTE_CACHE_DIR, else ~/.cache/haste)");
  cmd->footer(
      "Examples:\n"
      "  haste data stats data/debdeps/xc/debdeps_train.txt.xz\n"
      "  haste data stats trn_X_Xf.txt trn_X_Y.txt --json");
  cmd->callback([args] { run_stats(*args); });
}

}  // namespace haste::cli
