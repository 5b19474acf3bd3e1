// `haste device`: what this build and machine can run on.
#include <haste/device.hpp>

#include "commands.hpp"

#include <fmt/format.h>

namespace haste::cli {

void add_device(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("device", "Show the GPUs this build of haste can use");
  cmd->callback([] {
    GpuInventory inventory = detect_gpus();
    fmt::print("CUDA backend: {}\n", cuda_compiled() ? "compiled (sm_90a)" : "not compiled");
    if (inventory.gpus.empty()) fmt::print("GPUs: none ({}); training runs on the CPU\n",
                                           inventory.unavailable_reason);
    for (const GpuInfo& gpu : inventory.gpus) {
      fmt::print("GPU {}: {} (sm_{}{}, {} SMs, {:.1f} GiB)\n", gpu.index, gpu.name,
                 gpu.compute_major, gpu.compute_minor, gpu.multiprocessors,
                 gpu.memory_bytes / double(1 << 30));
    }
  });
}

}  // namespace haste::cli
