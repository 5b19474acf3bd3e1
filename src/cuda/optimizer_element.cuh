// One element's optimizer update on the device: the arithmetic of src/model/optimizer.cpp in
// fp32 (AdamW with one fast division) and the stochastic rounding of bf16 results. Shared by the
// update kernels (optimizer_gpu.cu) and the fused tail kernel, which applies the update as it
// completes each weight gradient (gsff_fused_train.cu), so that both give the same bits.
#pragma once

#include "cuda/optimizer_launch.hpp"

namespace haste::cuda {

__device__ inline float to_float(float x) { return x; }
__device__ inline float to_float(bf16 x) { return __bfloat162float(x); }

// The 16 random bits of element i's stochastic rounding: one hash of (key, i / 4) serves four
// consecutive elements (a quarter of the hashing in the update's inner loop; the rounding uses
// 16 bits).
__device__ inline uint64_t rounding_bits_of_four(uint64_t key, int64_t i) {
  return mix64(key ^ static_cast<uint64_t>(i >> 2));
}
__device__ inline uint32_t rounding_draw(uint64_t bits_of_four, int64_t i) {
  return static_cast<uint32_t>(bits_of_four >> (16 * (i & 3)));
}

// Writes x to element i of a parameter: fp32 as is, bf16 rounded stochastically with a draw
// that depends only on (key, i).
__device__ inline void store_rounded(float* out, float x, uint64_t /*key*/, int64_t /*i*/) {
  *out = x;
}
__device__ inline void store_rounded(bf16* out, float x, uint64_t key, int64_t i) {
  *out = stochastic_round_bf16(x, rounding_draw(rounding_bits_of_four(key, i), i));
}

// One element's update in registers: the CPU's AdamW, m_hat / (sqrt(v_hat) + eps), with the bias
// corrections as host-computed factors and one fast division (a few ulp from the CPU's
// three divisions: the update runs inside the fused tail kernel's critical path).
__device__ inline void update_value(const UpdateScalars& s, float g, float& w, float& m, float& v) {
  if (s.kind == OptimizerKind::adamw) {
    m = s.beta1 * m + (1 - s.beta1) * g;
    v = s.beta2 * v + (1 - s.beta2) * g * g;
    const float update =
        __fdividef(m * s.inv_correction1, sqrtf(v) * s.inv_sqrt_correction2 + s.eps);
    w -= s.lr * (update + s.weight_decay * w);
  } else {
    m = s.momentum * m + g + s.weight_decay * w;
    w -= s.lr * m;
  }
}

// Elements i .. i + 3 of a bf16 parameter (i a multiple of 4) with their optimizer state, in
// registers: loaded apart from the update so that a kernel can start the loads early.
struct Bf16x4Operands {
  uint2 weights;
  float4 first, second;  // second: AdamW only
};
__device__ inline Bf16x4Operands load_bf16x4(const InKernelUpdate& u, const bf16* value,
                                             int64_t i) {
  Bf16x4Operands out;
  out.weights = *reinterpret_cast<const uint2*>(value + i);
  out.first = *reinterpret_cast<const float4*>(u.state.first + i);
  if (u.scalars.kind == OptimizerKind::adamw)
    out.second = *reinterpret_cast<const float4*>(u.state.second + i);
  return out;
}

// Updates those four elements from four fp32 gradient values, first rounded to bf16 as a stored
// bf16 gradient would be, and writes them and their state back.
__device__ inline void update_bf16x4(const InKernelUpdate& u, Bf16x4Operands x,
                                     const float (&grad)[4], bf16* value, int64_t i) {
  bf16* w = reinterpret_cast<bf16*>(&x.weights);
  float* m = &x.first.x;
  float* v = &x.second.x;
  const uint64_t draws = rounding_bits_of_four(u.rounding_key, i);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    float wj = __bfloat162float(w[j]);
    update_value(u.scalars, __bfloat162float(__float2bfloat16_rn(grad[j])), wj, m[j], v[j]);
    w[j] = stochastic_round_bf16(wj, rounding_draw(draws, j));
  }
  *reinterpret_cast<uint2*>(value + i) = x.weights;
  *reinterpret_cast<float4*>(u.state.first + i) = x.first;
  if (u.scalars.kind == OptimizerKind::adamw)
    *reinterpret_cast<float4*>(u.state.second + i) = x.second;
}

}  // namespace haste::cuda
