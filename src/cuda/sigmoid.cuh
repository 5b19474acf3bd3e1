// The logistic sigmoid on the device, computed as the CPU's tail loss computes it
// (src/cpu/tail_loss_cpu.cpp): exp is only taken of a non-positive number, so neither branch
// overflows. (The fused training kernel has its own fast-math version.)
#pragma once

namespace haste::cuda {

__device__ inline float sigmoid(float z) {
  if (z >= 0) return 1.f / (1.f + expf(-z));
  const float e = expf(z);
  return e / (1.f + e);
}

// sigmoid(z) - y. For the common y = 1 it is -sigmoid(-z), which keeps its relative precision
// for large z where sigmoid(z) rounds to 1.
__device__ inline float sigmoid_minus(float z, float y) {
  return y == 1.f ? -sigmoid(-z) : sigmoid(z) - y;
}

}  // namespace haste::cuda
