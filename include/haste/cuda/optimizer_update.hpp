// The GPU optimizer's update functions on raw device pointers (see optimizer_gpu.hpp, which
// includes this header and adds OptimizerGpu, the owner of the state). Kept apart so that the
// kernel file (nvcc) reads only these declarations.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <haste/group_shared.hpp>
#include <haste/optimizer.hpp>

namespace haste::cuda {

using bf16 = __nv_bfloat16;

// The scalars of one update, as Optimizer::update_rows computes them on the CPU. `step` is the
// 1-based number of the step being taken (Optimizer::steps_taken() after its step()).
struct UpdateScalars {
  OptimizerKind kind = OptimizerKind::adamw;
  float lr = 0, beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0, momentum = 0;
  // AdamW's bias corrections as factors: 1 / (1 - beta1^step) and 1 / sqrt(1 - beta2^step).
  float inv_correction1 = 1, inv_sqrt_correction2 = 1;
  uint64_t seed = 0;  // stochastic rounding: mixed with step and parameter
  int64_t step = 0;

  static UpdateScalars of(const OptimizerConfig& config, double lr, int64_t step, uint64_t seed);
};

// The state of one parameter: `first` = Adam m or SGD momentum, `second` = Adam v (null for
// SGD); fp32, same element count as the parameter.
struct OptimizerStateDevice {
  float* first = nullptr;
  float* second = nullptr;
};

// An update that the kernel computing a bf16 parameter's gradient applies itself as each
// gradient value is complete (the fused tail kernel), so that the gradient never goes through
// memory: the same arithmetic, state and rounding draws as optimizer_update of that parameter
// with the gradient rounded to bf16. From OptimizerGpu::in_kernel_update.
struct InKernelUpdate {
  UpdateScalars scalars;
  OptimizerStateDevice state;
  uint64_t rounding_key = 0;  // the step's key for this parameter; elements mix in their index
};

// Dense update of n elements. `stream_id` tells parameters apart in the rounding hash.
// T (value) in {float, bf16}; Grad in {float, bf16}.
template <typename T, typename Grad>
void optimizer_update(const UpdateScalars& s, T* value, const Grad* grad,
                      OptimizerStateDevice state, int64_t n, uint32_t stream_id,
                      cudaStream_t stream);

// Lazy row-sparse update of a [rows, width] parameter: for u < *row_count (device int), row
// rows[u] of value and state is updated from row u of the COMPACT gradient grad [max_rows,
// width]. Rows must be distinct. Launches for max_rows rows.
template <typename T, typename Grad>
void optimizer_update_rows(const UpdateScalars& s, T* value, const Grad* grad,
                           OptimizerStateDevice state, int64_t width, const int32_t* rows,
                           const int32_t* row_count, int64_t max_rows, uint32_t stream_id,
                           cudaStream_t stream);

// DST moved the tail's slots (include/haste/optimizer.hpp remap_tail_slots, slot_remap.hpp):
// new slot j of group G takes old slot source[G, j], or 0 when it is -1. `values` is [G*g, k]
// label-major (tail weights or a state tensor); `source` [G, k] int32 on the device. In place.
template <typename T>
void remap_tail_slots(const GroupSharedShape& shape, const int32_t* source, T* values,
                      cudaStream_t stream);

// Rounds x to bf16 stochastically with the given 32 random bits (exposed for the tests).
__host__ __device__ inline bf16 stochastic_round_bf16(float x, uint32_t random_bits) {
  // Adding 16 random bits below the bf16 mantissa and truncating rounds up with probability
  // (dropped bits) / 2^16: unbiased. Inf and NaN keep their class (no carry into them from a
  // finite value except at the overflow edge, where rounding up to inf is right).
  uint32_t bits;
  memcpy(&bits, &x, 4);
  if ((bits & 0x7f800000u) != 0x7f800000u) bits += random_bits & 0xffffu;
  bits &= 0xffff0000u;
  float rounded;
  memcpy(&rounded, &bits, 4);
  return bf16(rounded);  // exact: the low 16 bits are zero
}

}  // namespace haste::cuda
