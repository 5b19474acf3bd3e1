// The logistic sigmoid of the BCE-with-logits gradient, shared by the CPU tail loss and the
// CUDA loss kernels (the head's and DST's; the fused training kernel keeps its own fast-math
// version), so that both compute it the same way.
#pragma once

#include <cmath>

#include "util/host_device.hpp"

namespace haste {

// 1 / (1 + exp(-z)) without overflow: exp is only taken of a non-positive number.
template <typename T>
HASTE_HOST_DEVICE inline T sigmoid(T z) {
  if (z >= 0) return T(1) / (T(1) + std::exp(-z));
  const T e = std::exp(z);
  return e / (T(1) + e);
}

// sigmoid(z) - y. For the common y = 1 it is -sigmoid(-z), which keeps its relative precision
// for large z where sigmoid(z) rounds to 1.
template <typename T>
HASTE_HOST_DEVICE inline T sigmoid_minus(T z, T y) {
  return y == T(1) ? -sigmoid(-z) : sigmoid(z) - y;
}

}  // namespace haste
