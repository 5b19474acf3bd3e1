// `haste inspect`: what a safetensors file (a HASTE checkpoint, or any other) holds.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <filesystem>
#include <haste/safetensors.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>

#include "commands.hpp"

namespace haste::cli {
namespace {

struct InspectArgs {
  std::filesystem::path file;
  bool json = false;
};

double sum_of(const TensorView& tensor) {
  // Wide types would lose digits through float; they are summed as they are.
  if (tensor.dtype == DType::F64) {
    auto values = tensor.values<double>();
    return std::accumulate(values.begin(), values.end(), 0.0);
  }
  if (tensor.dtype == DType::I64) {
    double sum = 0;
    for (int64_t v : tensor.values<int64_t>()) sum += static_cast<double>(v);
    return sum;
  }
  std::vector<float> values = tensor.to_float();
  return std::accumulate(values.begin(), values.end(), 0.0);
}

void run_inspect(const InspectArgs& args) {
  SafetensorsFile file(args.file);
  if (args.json) {
    nlohmann::ordered_json out;
    out["metadata"] = file.metadata();
    out["tensors"] = nlohmann::ordered_json::array();
    for (const TensorView& t : file.tensors()) {
      out["tensors"].push_back({{"name", t.name},
                                {"dtype", dtype_name(t.dtype)},
                                {"shape", t.shape},
                                {"bytes", t.bytes.size()},
                                {"sum", sum_of(t)}});
    }
    fmt::print("{}\n", out.dump(2));
    return;
  }
  for (const auto& [key, value] : file.metadata()) {
    fmt::print("{} = {}\n", key, value.size() > 200 ? value.substr(0, 200) + "..." : value);
  }
  int64_t total = 0;
  for (const TensorView& t : file.tensors()) {
    fmt::print("{:<40} {:<5} [{}] {} bytes\n", t.name, dtype_name(t.dtype),
               fmt::join(t.shape, ", "), t.bytes.size());
    total += static_cast<int64_t>(t.bytes.size());
  }
  fmt::print("{} tensors, {} bytes\n", file.tensors().size(), total);
}

}  // namespace

void add_inspect(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* cmd = app.add_subcommand(
      "inspect",
      "List the metadata and tensors (name, dtype, shape, bytes) of a safetensors file, e.g. a "
      "checkpoint; --json adds each tensor's sum, for comparing files");
  cmd->add_option("FILE", args->file, "A .safetensors file")->required()->check(CLI::ExistingFile);
  cmd->add_flag("--json", args->json, "Print JSON");
  cmd->callback([args] { run_inspect(*args); });
}

}  // namespace haste::cli
