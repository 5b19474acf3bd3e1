// exp and log1p in plain arithmetic, for the loss sweep over every logit of a batch (the CPU
// engine's busiest loop after the GEMMs). libm's expf and log1pf are calls the compiler cannot
// vectorise without -ffast-math; these inline polynomials vectorise under `omp simd` at any
// x86-64 level, at about 1 ulp (exp) and 2e-7 relative (log1p) on the ranges the loss uses.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>

namespace haste::cpu {

// exp(x) for x <= 0. Below -87 it returns exp(-87) ~ 1.6e-38 (the smallest power that stays a
// normal float): a sigmoid or softplus that small is 0 to every consumer.
inline float exp_nonpositive(float x) {
  x = std::max(x, -87.0f);  // (a conditional expression here would stop the vectoriser)
  // x = n ln2 + r with |r| <= ln2 / 2; ln2 split in two so that n * ln2_hi is exact.
  constexpr float kLog2e = 1.44269504f, kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  // Adding 1.5 * 2^23 rounds to an integer (|x * log2e| < 2^22 here) without a rounding call.
  constexpr float kRound = 12582912.0f;
  const float n = (x * kLog2e + kRound) - kRound;
  const float r = (x - n * kLn2Hi) - n * kLn2Lo;
  // Taylor to r^6 (error below r^7 / 7! < 2e-7 relative on |r| <= 0.35).
  float p = 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^n from its exponent bits: n is in [-126, 0].
  const float two_to_n = std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
  return p * two_to_n;
}

// log(1 + e) for e in [0, 1], as 2 atanh(s) with s = e / (2 + e) in [0, 1/3]: the series to
// s^11 is within 2e-7 relative.
inline float log1p_unit(float e) {
  const float s = e / (2.0f + e), s2 = s * s;
  float p = 1.0f / 11;
  p = p * s2 + 1.0f / 9;
  p = p * s2 + 1.0f / 7;
  p = p * s2 + 1.0f / 5;
  p = p * s2 + 1.0f / 3;
  p = p * s2 + 1.0f;
  return 2.0f * s * p;
}

}  // namespace haste::cpu
