// Comparing GPU outputs with the CPU reference in double (the CUDA kernel tests): inputs are
// rounded to bf16 first so both sides compute the same function, and a relative error that
// treats an unwritten (NaN-poisoned) output as infinitely wrong.
#pragma once

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace haste::test_util {

// Rounds every value to bf16 (in place) and returns the bf16 copy.
inline std::vector<__nv_bfloat16> round_to_bf16(std::vector<double>& values) {
  std::vector<__nv_bfloat16> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    out[i] = __float2bfloat16(static_cast<float>(values[i]));
    values[i] = static_cast<double>(__bfloat162float(out[i]));
  }
  return out;
}

template <typename T>
std::vector<double> to_double(const std::vector<T>& values) {
  std::vector<double> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    if constexpr (std::is_same_v<T, __nv_bfloat16>)
      out[i] = __bfloat162float(values[i]);
    else
      out[i] = static_cast<double>(values[i]);
  }
  return out;
}

// ||out - ref|| / ||ref||, or infinity if any output is not finite (an unwritten NaN).
inline double relative_error(const std::vector<double>& out, const std::vector<double>& ref) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) return INFINITY;
    diff += (out[i] - ref[i]) * (out[i] - ref[i]);
    norm += ref[i] * ref[i];
  }
  return std::sqrt(diff / norm);
}

}  // namespace haste::test_util
