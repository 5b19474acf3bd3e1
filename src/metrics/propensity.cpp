// Jain et al. 2016 label propensities, the weights of the PS metrics.
#include <haste/error.hpp>
#include <haste/metrics.hpp>

#include <cmath>

namespace haste {

std::vector<int64_t> label_counts(const CsrMatrix& labels) {
  std::vector<int64_t> counts(static_cast<size_t>(labels.cols), 0);
  for (int32_t label : labels.indices) {
    check(label >= 0 && label < labels.cols, "label id {} is outside the {} labels of the matrix",
          label, labels.cols);
    ++counts[static_cast<size_t>(label)];
  }
  return counts;
}

std::vector<double> jain_propensities(std::span<const int64_t> label_counts, int64_t num_points,
                                      double A, double B) {
  check(num_points > 0, "propensities need at least one training point (got N = {})", num_points);
  check(std::isfinite(A) && std::isfinite(B),
        "propensity parameters must be finite (A = {}, B = {})", A, B);
  const double C = (std::log(static_cast<double>(num_points)) - 1.0) * std::pow(B + 1.0, A);
  std::vector<double> propensities(label_counts.size());
  for (size_t label = 0; label < label_counts.size(); ++label) {
    const double count = static_cast<double>(label_counts[label]);
    check(count >= 0, "label {} has a negative training count ({})", label, label_counts[label]);
    const double p = 1.0 / (1.0 + C * std::exp(-A * std::log(count + B)));
    // Tiny N (log N < 1) or B <= 0 with unseen labels make the model meaningless: p <= 0 or
    // p = 0 would turn into negative or infinite metric weights.
    check(std::isfinite(p) && p > 0.0,
          "the propensity model gives p = {} for label {} (N_l = {}, N = {}, A = {}, B = {}); "
          "it needs N >= 3 and N_l + B > 0",
          p, label, label_counts[label], num_points, A, B);
    propensities[label] = p;
  }
  return propensities;
}

std::vector<double> jain_propensities(const CsrMatrix& train_labels, double A, double B) {
  return jain_propensities(label_counts(train_labels), train_labels.rows, A, B);
}

}  // namespace haste
