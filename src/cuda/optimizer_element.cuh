// One element's optimizer update on the device: the arithmetic of src/model/optimizer.cpp in
// fp32 and the stochastic rounding of bf16 results. Shared by the update kernels
// (optimizer_gpu.cu) and the fused tail kernel, which applies the update as it completes each
// weight gradient (gsff_fused_train.cu), so that both give the same bits.
#pragma once

#include "cuda/optimizer_launch.hpp"

namespace haste::cuda {

__device__ inline float to_float(float x) { return x; }
__device__ inline float to_float(bf16 x) { return __bfloat162float(x); }

// Writes x to element i of a parameter: fp32 as is, bf16 rounded stochastically with a draw
// that depends only on (key, i).
__device__ inline void store_rounded(float* out, float x, uint64_t /*key*/, int64_t /*i*/) {
  *out = x;
}
__device__ inline void store_rounded(bf16* out, float x, uint64_t key, int64_t i) {
  *out = stochastic_round_bf16(x, static_cast<uint32_t>(mix64(key ^ static_cast<uint64_t>(i))));
}

// One element's update in registers.
__device__ inline void update_value(const UpdateScalars& s, float g, float& w, float& m, float& v) {
  if (s.kind == OptimizerKind::adamw) {
    m = s.beta1 * m + (1 - s.beta1) * g;
    v = s.beta2 * v + (1 - s.beta2) * g * g;
    const float update = (m / s.correction1) / (sqrtf(v / s.correction2) + s.eps);
    w -= s.lr * (update + s.weight_decay * w);
  } else {
    m = s.momentum * m + g + s.weight_decay * w;
    w -= s.lr * m;
  }
}

// Elements i .. i + 3 of a bf16 parameter (i a multiple of 4) and their state, from four fp32
// gradient values that are first rounded to bf16, as a stored bf16 gradient would be.
__device__ inline void update_bf16x4(const InKernelUpdate& u, bf16* value, int64_t i,
                                     const float (&grad)[4]) {
  const bool adam = u.scalars.kind == OptimizerKind::adamw;
  uint2 w_bits = *reinterpret_cast<const uint2*>(value + i);
  float4 m = *reinterpret_cast<const float4*>(u.state.first + i);
  float4 v = adam ? *reinterpret_cast<const float4*>(u.state.second + i) : float4{};
  bf16* w = reinterpret_cast<bf16*>(&w_bits);
  float* ms = &m.x;
  float* vs = &v.x;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    float wj = __bfloat162float(w[j]);
    update_value(u.scalars, __bfloat162float(__float2bfloat16_rn(grad[j])), wj, ms[j], vs[j]);
    store_rounded(&w[j], wj, u.rounding_key, i + j);
  }
  *reinterpret_cast<uint2*>(value + i) = w_bits;
  *reinterpret_cast<float4*>(u.state.first + i) = m;
  if (adam) *reinterpret_cast<float4*>(u.state.second + i) = v;
}

}  // namespace haste::cuda
