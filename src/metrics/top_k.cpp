// Turning a score matrix into rankings: the k best labels of each row, best first.
#include <haste/error.hpp>
#include <haste/metrics.hpp>

#include <algorithm>
#include <cmath>

namespace haste {

Rankings top_k(const CsrMatrix& scores, int k) {
  check(k >= 1, "top_k needs k >= 1 (got {})", k);
  check(scores.has_values(), "a score matrix needs values (got a pattern-only matrix)");
  Rankings rankings;
  rankings.cols = scores.cols;
  rankings.labels.reserve(static_cast<size_t>(std::min<int64_t>(scores.nnz(), scores.rows * k)));
  std::vector<int32_t> order;
  for (int64_t row = 0; row < scores.rows; ++row) {
    std::span<const int32_t> labels = scores.row_indices(row);
    std::span<const float> values = scores.row_values(row);
    order.resize(labels.size());
    for (size_t i = 0; i < labels.size(); ++i) {
      check(!std::isnan(values[i]), "row {} has a NaN score for label {}", row, labels[i]);
      order[i] = static_cast<int32_t>(i);
    }
    // Positions, not label ids, are sorted so that equal scores fall back to the label id
    // explicitly; this keeps the ranking independent of the order of a row's entries.
    auto better = [&](int32_t a, int32_t b) {
      if (values[a] != values[b]) return values[a] > values[b];
      return labels[a] < labels[b];
    };
    const size_t kept = std::min(order.size(), static_cast<size_t>(k));
    std::partial_sort(order.begin(), order.begin() + kept, order.end(), better);
    for (size_t i = 0; i < kept; ++i) rankings.labels.push_back(labels[order[i]]);
    rankings.offsets.push_back(static_cast<int64_t>(rankings.labels.size()));
    ++rankings.rows;
  }
  return rankings;
}

}  // namespace haste
