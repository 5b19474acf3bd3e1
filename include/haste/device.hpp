// Which compute devices this process can use. The same API exists in every build: without the
// CUDA backend, or on a machine without a GPU, it reports none and says why.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace haste {

struct GpuInfo {
  int index = 0;
  std::string name;  // as the driver names it, e.g. "NVIDIA H100 80GB HBM3"
  int compute_major = 0;
  int compute_minor = 0;
  int64_t memory_bytes = 0;
  int multiprocessors = 0;
};

struct GpuInventory {
  std::vector<GpuInfo> gpus;
  std::string unavailable_reason;  // set when `gpus` is empty: no CUDA build, no driver, ...
};

bool cuda_compiled();
GpuInventory detect_gpus();

}  // namespace haste
