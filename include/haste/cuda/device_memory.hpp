// A ledger of the device memory that DeviceBuffer allocates, per GPU: bytes held now and the
// high-water mark since the last reset. It answers "how much did this run need at its peak",
// which cudaMemGetInfo cannot (it sees only the present, and every process on the GPU).
// Library workspaces (cuBLAS, NCCL, the CUDA context) are not DeviceBuffers and not counted.
#pragma once

#include <cstdint>

namespace haste::cuda {

struct DeviceMemoryUse {
  int64_t current = 0;  // bytes held by DeviceBuffers on the device now
  int64_t peak = 0;     // the most held at once since the last reset_peak_device_memory
};

// The device's ledger (device = a CUDA device ordinal).
DeviceMemoryUse device_memory_use(int device);
// Starts a new high-water mark at what is held now.
void reset_peak_device_memory(int device);

// Called by DeviceBuffer on every allocation and free.
void note_device_allocation(int device, int64_t bytes);
void note_device_free(int device, int64_t bytes);

}  // namespace haste::cuda
