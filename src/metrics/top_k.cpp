// Turning a score matrix into rankings: the k best labels of each row, best first, with their
// scores.
#include <algorithm>
#include <cmath>
#include <haste/error.hpp>
#include <haste/metrics.hpp>

namespace haste {

void Rankings::append_row(std::span<const int32_t> ranked_labels,
                          std::span<const float> ranked_scores) {
  const bool scored = !ranked_scores.empty();
  check(scored ? ranked_scores.size() == ranked_labels.size() && has_scores()
               : ranked_labels.empty() || scores.empty(),
        "Rankings row {}: {} scores for {} labels, after {} scores for {} labels (give scores "
        "for every row or for none)",
        rows, ranked_scores.size(), ranked_labels.size(), scores.size(), labels.size());
  labels.insert(labels.end(), ranked_labels.begin(), ranked_labels.end());
  scores.insert(scores.end(), ranked_scores.begin(), ranked_scores.end());
  offsets.push_back(static_cast<int64_t>(labels.size()));
  ++rows;
}

Rankings top_k(const CsrMatrix& scores, int k) {
  check(k >= 1, "top_k needs k >= 1 (got {})", k);
  check(scores.has_values(), "a score matrix needs values (got a pattern-only matrix)");
  Rankings rankings;
  rankings.cols = scores.cols;
  std::vector<int32_t> order, best_labels;
  std::vector<float> best_scores;
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
    best_labels.clear();
    best_scores.clear();
    for (size_t i = 0; i < kept; ++i) {
      best_labels.push_back(labels[order[i]]);
      best_scores.push_back(values[order[i]]);
    }
    rankings.append_row(best_labels, best_scores);
  }
  return rankings;
}

}  // namespace haste
