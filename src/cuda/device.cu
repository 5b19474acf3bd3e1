// The device API in a CUDA build: asks the runtime, and turns "no driver" or "no device" into
// a reason rather than an error, so CPU-only machines run everything but GPU work.
#include <cuda_runtime.h>

#include <haste/device.hpp>

namespace haste {

bool cuda_compiled() { return true; }

GpuInventory detect_gpus() {
  GpuInventory inventory;
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    inventory.unavailable_reason = status != cudaSuccess
                                       ? std::string("no usable GPU: ") + cudaGetErrorString(status)
                                       : "no GPU found";
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return inventory;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    inventory.gpus.push_back({i, prop.name, prop.major, prop.minor,
                              static_cast<int64_t>(prop.totalGlobalMem), prop.multiProcessorCount});
  }
  return inventory;
}

}  // namespace haste
