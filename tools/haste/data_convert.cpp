// `haste data convert`: between the single-file and split XC formats, and between compressions.
#include <fmt/format.h>

#include <filesystem>
#include <haste/dataset.hpp>
#include <memory>
#include <optional>

#include "commands.hpp"

namespace haste::cli {
namespace {

struct ConvertArgs {
  std::filesystem::path input;
  std::optional<std::filesystem::path> input_labels;
  std::filesystem::path output;
  std::optional<std::filesystem::path> output_labels;
  bool no_cache = false;
};

void run_convert(const ConvertArgs& args) {
  ReadOptions options;
  options.use_cache = !args.no_cache;
  Dataset data = read_dataset(args.input, args.input_labels, options);
  if (args.output_labels) {
    write_xc_split(data, args.output, *args.output_labels);
    fmt::print("wrote {} rows to {} (features) and {} (labels)\n", data.num_points(),
               args.output.string(), args.output_labels->string());
  } else {
    write_xc(data, args.output);
    fmt::print("wrote {} rows to {}\n", data.num_points(), args.output.string());
  }
}

}  // namespace

void add_data_convert(CLI::App& data) {
  auto args = std::make_shared<ConvertArgs>();
  CLI::App* cmd = data.add_subcommand(
      "convert",
      "Convert a dataset between the XC single-file format (header 'N F L') and the split "
      "format (features 'N F' + labels 'N L'), and between compressions. The output format "
      "follows the flags: --out alone writes a single file, --out with --out-labels writes a "
      "split pair; each output is compressed by its extension (.xz, .gz, .bz2, else plain)");
  cmd->add_option("IN", args->input,
                  "Input: an XC single file, or the features of a split dataset (text or .npy)")
      ->required();
  cmd->add_option("IN_LABELS", args->input_labels, "Labels of a split input dataset");
  cmd->add_option("--out,-o", args->output, "Output file (single) or features file (split)")
      ->required();
  cmd->add_option("--out-labels", args->output_labels,
                  "Labels output file: give it to write the split format");
  cmd->add_flag("--no-cache", args->no_cache, "Do not use or write the binary cache");
  cmd->footer(
      "Examples:\n"
      "  # single file -> split pair in the Extreme Classification Repository's style\n"
      "  haste data convert train.txt.xz --out trn_X_Xf.txt --out-labels trn_X_Y.txt\n"
      "  # split pair (or dense .npy features + labels) -> one gzip'd single file\n"
      "  haste data convert trn_X_Xf.txt trn_X_Y.txt --out train.txt.gz");
  cmd->callback([args] { run_convert(*args); });
}

}  // namespace haste::cli
