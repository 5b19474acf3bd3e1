// Small, portable random number tools for generators that must give the same numbers on every
// machine and for every thread count: a counter-style hash to derive independent streams from
// (seed, row, ...) keys, a SplitMix64 stream, and Poisson and Zipf samplers written out here
// because the standard library's distributions differ between implementations.
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>

// mix64 and hash_key also compile as device functions (HASTE_HOST_DEVICE), so GPU kernels
// draw the same numbers (the GPU encoder's dropout masks).
#include "util/host_device.hpp"

namespace haste {

// SplitMix64's finaliser: a bijective 64-bit mix with good avalanche.
HASTE_HOST_DEVICE inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// A hash of a key tuple, e.g. hash_key(seed, kTopicStream, cluster, j): anything derived from
// the key (a row's random stream, a cluster's topic features) needs no storage.
HASTE_HOST_DEVICE inline uint64_t hash_key(uint64_t a) { return mix64(a + 0x9e3779b97f4a7c15ULL); }
template <typename... Rest>
HASTE_HOST_DEVICE uint64_t hash_key(uint64_t a, uint64_t b, Rest... rest) {
  return hash_key(mix64(a + 0x9e3779b97f4a7c15ULL) ^ b, static_cast<uint64_t>(rest)...);
}

// SplitMix64 stream: tiny state, passes BigCrush, and seeding from a hash is all it needs.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}

  uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    return mix64(state_);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform in [0, n), n > 0 (Lemire's multiply-shift; the bias is below 2^-32 for our n).
  uint64_t below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
  }
  bool bernoulli(double p) { return uniform() < p; }

  // Poisson(mean): inversion by multiplication for small means, a rounded normal beyond 30
  // (where the two are indistinguishable for our purposes and inversion would underflow).
  int64_t poisson(double mean) {
    if (mean <= 0) return 0;
    if (mean > 30) {
      double u1 = 1.0 - uniform(), u2 = uniform();
      double normal = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
      double x = std::round(mean + std::sqrt(mean) * normal);
      return x < 0 ? 0 : static_cast<int64_t>(x);
    }
    double limit = std::exp(-mean), product = uniform();
    int64_t k = 0;
    while (product > limit) {
      product *= uniform();
      ++k;
    }
    return k;
  }

 private:
  uint64_t state_;
};

// Zipf distribution on ranks {0, ..., n-1}: P(r) proportional to (r + 1)^-exponent, sampled by
// rejection-inversion (Hormann and Derflinger, 1996) in O(1) time and memory, so n may be in
// the billions. Exponent > 0 (1 included).
class ZipfSampler {
 public:
  ZipfSampler(int64_t n, double exponent) : n_(n), s_(exponent) {
    h_integral_x1_ = h_integral(1.5) - 1.0;
    h_integral_n_ = h_integral(static_cast<double>(n) + 0.5);
    squeeze_ = 2.0 - h_integral_inverse(h_integral(2.5) - h(2.0));
  }

  int64_t operator()(Rng& rng) const {
    for (;;) {
      double u = h_integral_n_ + rng.uniform() * (h_integral_x1_ - h_integral_n_);
      double x = h_integral_inverse(u);
      double k = std::floor(x + 0.5);
      if (k < 1) k = 1;
      if (k > static_cast<double>(n_)) k = static_cast<double>(n_);
      if (k - x <= squeeze_ || u >= h_integral(k + 0.5) - h(k)) {
        return static_cast<int64_t>(k) - 1;
      }
    }
  }

 private:
  double h(double x) const { return std::exp(-s_ * std::log(x)); }
  // Integral of h: (x^(1-s) - 1) / (1 - s), written so that s = 1 (log x) is no special case.
  double h_integral(double x) const {
    double log_x = std::log(x);
    return expm1_over_x((1.0 - s_) * log_x) * log_x;
  }
  double h_integral_inverse(double y) const {
    double t = y * (1.0 - s_);
    if (t < -1.0) t = -1.0;  // rounding at the edge of the support
    return std::exp(log1p_over_x(t) * y);
  }
  static double expm1_over_x(double x) {
    return std::abs(x) > 1e-8 ? std::expm1(x) / x : 1.0 + x * 0.5 * (1.0 + x / 3.0);
  }
  static double log1p_over_x(double x) {
    return std::abs(x) > 1e-8 ? std::log1p(x) / x : 1.0 - x * (0.5 - x / 3.0);
  }

  int64_t n_;
  double s_;
  double h_integral_x1_;
  double h_integral_n_;
  double squeeze_;
};

}  // namespace haste
