// Initial weights, drawn from the project's portable Rng so that a seed gives the same model on
// every machine and for every thread count.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>

#include "data/random.hpp"

namespace haste::model {

// Uniform in [-a, a] with a = sqrt(3 * variance). Callers pick the variance: 2 / fan_in (He)
// for ReLU layers, 1 / fan_in for output layers whose logits should start at unit variance.
inline void fill_uniform(std::span<float> weights, double variance, uint64_t seed) {
  const double a = std::sqrt(3.0 * variance);
  Rng rng(seed);
  for (float& w : weights) w = static_cast<float>(rng.uniform(-a, a));
}

}  // namespace haste::model
