// Random inputs for kernel tests: dense tensors, group feature indices, sparse target patterns,
// and NaN-poisoned outputs (so an element a kernel forgets to write fails the comparison).
// Deterministic for a seed on every platform: std::mt19937_64 is fully specified, and the
// conversions to floats and ranges are written out here (std's distributions are not).
#pragma once

#include <haste/sparse.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace haste::test_util {

class RandomTensors {
 public:
  explicit RandomTensors(uint64_t seed) : engine_(seed) {}

  // Uniform in [lo, hi). Values are rounded to float first, so the same draw gives identical
  // float and double tensors (for float-vs-double agreement tests).
  double uniform(double lo = 0.0, double hi = 1.0) {
    double u = static_cast<double>(engine_() >> 11) * 0x1.0p-53;
    return static_cast<double>(static_cast<float>(lo + (hi - lo) * u));
  }
  // Uniform in [0, n).
  int64_t below(int64_t n) { return static_cast<int64_t>(engine_() % static_cast<uint64_t>(n)); }

  template <typename T>
  std::vector<T> tensor(int64_t n, double lo = -1.0, double hi = 1.0) {
    std::vector<T> out(n);
    for (auto& x : out) x = static_cast<T>(uniform(lo, hi));
    return out;
  }

  // [G, k] feature indices: k distinct features of [0, d) per group, sorted (Floyd's sampling).
  std::vector<int32_t> group_indices(int64_t G, int64_t d, int64_t k) {
    std::vector<int32_t> out;
    out.reserve(G * k);
    std::vector<int32_t> chosen;
    for (int64_t group = 0; group < G; ++group) {
      chosen.clear();
      for (int64_t n = d - k; n < d; ++n) {
        auto candidate = static_cast<int32_t>(below(n + 1));
        bool taken = std::find(chosen.begin(), chosen.end(), candidate) != chosen.end();
        chosen.push_back(taken ? static_cast<int32_t>(n) : candidate);
      }
      std::sort(chosen.begin(), chosen.end());
      out.insert(out.end(), chosen.begin(), chosen.end());
    }
    return out;
  }

  // rows x cols pattern matrix (no values), each entry present with probability `density`;
  // with `soft` true every entry gets a value in [0, 1) instead.
  CsrMatrix sparse_targets(int64_t rows, int64_t cols, double density, bool soft = false) {
    CsrMatrix out;
    out.cols = cols;
    std::vector<int32_t> row_indices;
    std::vector<float> row_values;
    for (int64_t r = 0; r < rows; ++r) {
      row_indices.clear();
      row_values.clear();
      for (int64_t c = 0; c < cols; ++c) {
        if (uniform() < density) {
          row_indices.push_back(static_cast<int32_t>(c));
          if (soft) row_values.push_back(static_cast<float>(uniform()));
        }
      }
      out.append_row(row_indices, row_values);
    }
    return out;
  }

 private:
  std::mt19937_64 engine_;
};

template <typename T>
std::vector<T> poisoned(int64_t n) {
  return std::vector<T>(n, std::numeric_limits<T>::quiet_NaN());
}

template <typename To, typename From>
std::vector<To> convert(const std::vector<From>& values) {
  return std::vector<To>(values.begin(), values.end());
}

// [rows, cols] row-major -> [cols, rows] row-major, e.g. h [B, d] to the GPU's h^T [d, B].
template <typename T>
std::vector<T> transpose(const std::vector<T>& a, int64_t rows, int64_t cols) {
  std::vector<T> out(a.size());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) out[c * rows + r] = a[r * cols + c];
  }
  return out;
}

}  // namespace haste::test_util
