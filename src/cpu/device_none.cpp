// The device API in a build without the CUDA backend.
#include <haste/device.hpp>

namespace haste {

bool cuda_compiled() { return false; }

GpuInventory detect_gpus() {
  return {{}, "this build of haste has no CUDA backend (no CUDA compiler was found)"};
}

}  // namespace haste
