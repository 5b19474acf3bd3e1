// BCE-with-logits for a tail block on the CPU (see include/haste/tail_loss.hpp).
//
// Per element loss(z, y) = max(z, 0) - z * y + log1p(exp(-|z|)) is linear in y, so each row is
// two passes: every real label as a negative (y = 0), then a correction at the row's few
// stored targets. That keeps the dense pass free of the sparse lookups, as the fused kernel is.
#include <algorithm>
#include <cmath>
#include <haste/error.hpp>
#include <haste/tail_loss.hpp>

#include "cpu/sigmoid.hpp"

namespace haste {
namespace {

// Smaller blocks run on the calling thread: starting a thread team costs more than the work.
constexpr int64_t kMinParallelLogits = int64_t{1} << 14;

// log(1 + exp(z)) without overflow for large |z|.
template <typename T>
T softplus(T z) {
  return std::max(z, T(0)) + std::log1p(std::exp(-std::abs(z)));
}

void check_targets(int64_t B, int64_t L_tail, const CsrMatrix& targets, TailLabelRange range) {
  constexpr const char* kFunction = "bce_with_logits_tail";
  check(targets.rows == B, "{}: targets have {} rows, expected one per batch row (B = {})",
        kFunction, targets.rows, B);
  check(static_cast<int64_t>(targets.indptr.size()) == B + 1,
        "{}: targets.indptr has {} entries, expected rows + 1 = {}", kFunction,
        targets.indptr.size(), B + 1);
  check(targets.values.empty() || targets.values.size() == targets.indices.size(),
        "{}: targets have {} values for {} indices (pattern matrices have none)", kFunction,
        targets.values.size(), targets.indices.size());
  check(range.first >= 0, "{}: label range starts at {}, must not be negative", kFunction,
        range.first);
  check(range.count >= 0 && range.count <= L_tail,
        "{}: label range has {} real labels, must be in [0, L_tail = {}]", kFunction, range.count,
        L_tail);
  check(range.first + range.count <= targets.cols,
        "{}: label range [{}, {}) goes past the targets' {} columns", kFunction, range.first,
        range.first + range.count, targets.cols);
}

}  // namespace

template <typename T>
double bce_with_logits_tail(int64_t B, int64_t L_tail, std::span<const T> z,
                            const CsrMatrix& targets, TailLabelRange range, std::span<T> dz) {
  constexpr const char* kFunction = "bce_with_logits_tail";
  check(B >= 0 && L_tail >= 0, "{}: B = {} and L_tail = {} must not be negative", kFunction, B,
        L_tail);
  check(static_cast<int64_t>(z.size()) == B * L_tail,
        "{}: z has {} elements, expected B * L_tail = {}", kFunction, z.size(), B * L_tail);
  check(static_cast<int64_t>(dz.size()) == B * L_tail,
        "{}: dz has {} elements, expected B * L_tail = {}", kFunction, dz.size(), B * L_tail);
  check_targets(B, L_tail, targets, range);
  if (B == 0) return 0.0;

  const T inv_batch = T(1) / static_cast<T>(B);
  const bool soft = !targets.values.empty();
  double loss = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : loss) if (B * L_tail >= kMinParallelLogits)
  for (int64_t b = 0; b < B; ++b) {
    const T* z_row = z.data() + b * L_tail;
    T* dz_row = dz.data() + b * L_tail;
    double row_loss = 0.0;
    for (int64_t l = 0; l < range.count; ++l) {
      row_loss += softplus(z_row[l]);
      dz_row[l] = sigmoid(z_row[l]) * inv_batch;
    }
    std::fill(dz_row + range.count, dz_row + L_tail, T(0));

    // Stored targets of this row that fall in the block: indices are sorted, so one search.
    const auto labels = targets.row_indices(b);
    auto it = std::lower_bound(labels.begin(), labels.end(), range.first);
    for (; it != labels.end() && *it < range.first + range.count; ++it) {
      const int64_t l = *it - range.first;
      const T y =
          soft ? static_cast<T>(targets.values[targets.indptr[b] + (it - labels.begin())]) : T(1);
      row_loss -= static_cast<double>(z_row[l]) * static_cast<double>(y);
      dz_row[l] = sigmoid_minus(z_row[l], y) * inv_batch;
    }
    loss += row_loss;
  }
  return loss / static_cast<double>(B);
}

template double bce_with_logits_tail<float>(int64_t, int64_t, std::span<const float>,
                                            const CsrMatrix&, TailLabelRange, std::span<float>);
template double bce_with_logits_tail<double>(int64_t, int64_t, std::span<const double>,
                                             const CsrMatrix&, TailLabelRange, std::span<double>);

}  // namespace haste
