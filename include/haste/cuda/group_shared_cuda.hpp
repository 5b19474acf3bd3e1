// The group-shared fixed fan-in layer on the GPU (DESIGN.md 3 and 8): the same three products
// as include/haste/group_shared.hpp, on device pointers, bf16 storage and fp32 accumulation on
// the tensor cores. g = 1 runs the standard fixed fan-in kernels (the in-house baseline).
//
// Layouts differ from the CPU reference in one place: h is FEATURE-MAJOR, hT [d, B], so that a
// group's gathered feature is one contiguous row of B values, and dh is accumulated into the
// fp32 dhT [d, B]. Everything else is row-major as on the CPU:
//   hT       [d, B]        bf16      dhT  [d, B]        fp32 (accumulated into)
//   z, dz    [B, L_tail]   bf16
//   indices  [G, k]        int32     (sorted, distinct, in [0, d); not checked on the device)
//   weights  [L_tail, k]   bf16      dweights [L_tail, k] bf16 (overwritten)
//   bias     [L_tail]      fp32      dbias    [L_tail]    fp32 (overwritten)
// Supported: g in {1, 8, 16, 32, 64}, k in {32, 64, 128}, d <= 1024, B a multiple of 16 up to
// 1024 (pad the batch with zero rows). Anything else throws haste::Error before any launch.
// Every call is asynchronous on `stream`; a launch failure throws.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <haste/group_shared.hpp>

namespace haste::cuda {

using bf16 = __nv_bfloat16;

// Device pointers to the layer's parameters.
struct GroupSharedDevice {
  GroupSharedShape shape;
  const int32_t* indices = nullptr;  // [G, k]
  const bf16* weights = nullptr;     // [L_tail, k]
  const float* bias = nullptr;       // [L_tail]
};

// Throws haste::Error (naming the value and the supported set) unless the kernels take this
// shape and batch size.
void check_supported(const GroupSharedShape& shape, int64_t B);

// z = the layer applied to h (every element of z written).
void group_shared_forward(const GroupSharedDevice& layer, int64_t B, const bf16* hT, bf16* z,
                          cudaStream_t stream);

// dweights[l, j] = sum_b dz[b, l] * h[b, idx[l / g][j]], dbias[l] = sum_b dz[b, l]
// (overwritten). Reads only the shape and indices of `layer`.
void group_shared_backward_weights(const GroupSharedDevice& layer, int64_t B, const bf16* hT,
                                   const bf16* dz, bf16* dweights, float* dbias,
                                   cudaStream_t stream);

// dhT[idx[G][j], b] += sum_{l in G} dz[b, l] * W[l, j] (accumulated, as on the CPU).
void group_shared_backward_inputs(const GroupSharedDevice& layer, int64_t B, const bf16* dz,
                                  float* dhT, cudaStream_t stream);

}  // namespace haste::cuda
