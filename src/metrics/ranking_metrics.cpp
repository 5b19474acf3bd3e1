// P@k, nDCG@k, PSP@k and PSnDCG@k over a set of rows (definitions in include/haste/metrics.hpp).
#include <haste/error.hpp>
#include <haste/metrics.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>

namespace haste {
namespace {

// Sums over rows of each metric's per-row value (and of the best achievable PS values, the
// normalisers of PSP and PSnDCG). Index k - 1 holds the value at k.
struct MetricSums {
  std::array<double, kMaxK> precision{}, ndcg{};
  std::array<double, kMaxK> psp{}, best_psp{}, psndcg{}, best_psndcg{};

  void add(const MetricSums& other) {
    for (int i = 0; i < kMaxK; ++i) {
      precision[i] += other.precision[i];
      ndcg[i] += other.ndcg[i];
      psp[i] += other.psp[i];
      best_psp[i] += other.best_psp[i];
      psndcg[i] += other.psndcg[i];
      best_psndcg[i] += other.best_psndcg[i];
    }
  }
};

// 1 / log2(rank + 1) for ranks 1..kMaxK (computed as napkinXC does, so the sums agree to the
// last bit where the summation order does).
const std::array<double, kMaxK> kDiscount = [] {
  std::array<double, kMaxK> discount{};
  for (int i = 0; i < kMaxK; ++i) discount[i] = 1.0 / std::log2(i + 2.0);
  return discount;
}();

// Adds one row's contributions. `truth` is sorted by id; `ranked` is best first and already
// cut to at most kMaxK labels; `inverse_propensity` is empty when PS metrics are skipped.
void add_row(std::span<const int32_t> truth, std::span<const int32_t> ranked,
             std::span<const double> inverse_propensity, std::vector<double>& truth_weights,
             MetricSums& sums) {
  const bool scored = !inverse_propensity.empty();
  double hits = 0, dcg = 0, ps_gain = 0, ps_dcg = 0;
  double ideal_dcg = 0, best_ps_gain = 0, best_ps_dcg = 0;

  // The best achievable PS values rank the row's true labels by decreasing weight.
  if (scored) {
    truth_weights.clear();
    for (int32_t label : truth) truth_weights.push_back(inverse_propensity[label]);
    const size_t best = std::min(truth_weights.size(), static_cast<size_t>(kMaxK));
    std::partial_sort(truth_weights.begin(), truth_weights.begin() + best, truth_weights.end(),
                      std::greater<>());
  }

  for (int i = 0; i < kMaxK; ++i) {
    const double at_k = i + 1;
    const size_t rank = static_cast<size_t>(i);
    if (rank < ranked.size() && std::binary_search(truth.begin(), truth.end(), ranked[rank])) {
      hits += 1;
      dcg += kDiscount[i];
      if (scored) {
        ps_gain += inverse_propensity[ranked[rank]];
        ps_dcg += inverse_propensity[ranked[rank]] * kDiscount[i];
      }
    }
    sums.precision[i] += hits / at_k;
    if (truth.empty()) continue;  // no relevant label: 0 for nDCG, nothing for the PS sums

    if (rank < truth.size()) ideal_dcg += kDiscount[i];
    sums.ndcg[i] += dcg / ideal_dcg;
    if (scored) {
      if (rank < truth.size()) {
        best_ps_gain += truth_weights[rank];
        best_ps_dcg += truth_weights[rank] * kDiscount[i];
      }
      sums.psp[i] += ps_gain / at_k;
      sums.best_psp[i] += best_ps_gain / at_k;
      sums.psndcg[i] += ps_dcg / ideal_dcg;
      sums.best_psndcg[i] += best_ps_dcg / ideal_dcg;
    }
  }
}

// Everything that could make the metrics wrong or the loop read out of bounds is rejected
// here, before the parallel loop (exceptions must not escape an OpenMP region).
void validate(const Rankings& predictions, const CsrMatrix& truth,
              std::span<const double> propensities) {
  check(truth.rows > 0, "there are no rows to evaluate");
  check(predictions.rows == truth.rows, "the predictions have {} rows but the ground truth has {}",
        predictions.rows, truth.rows);
  check(predictions.cols == truth.cols,
        "the predictions are over {} labels but the ground truth over {}", predictions.cols,
        truth.cols);
  check(propensities.empty() || static_cast<int64_t>(propensities.size()) == truth.cols,
        "there are {} propensities for {} labels (the training set and the ground truth must "
        "share one label space)",
        propensities.size(), truth.cols);
  for (size_t label = 0; label < propensities.size(); ++label) {
    check(std::isfinite(propensities[label]) && propensities[label] > 0,
          "propensity of label {} is {}; it must be positive", label, propensities[label]);
  }
  for (int64_t row = 0; row < truth.rows; ++row) {
    std::span<const int32_t> labels = truth.row_indices(row);
    for (size_t i = 0; i < labels.size(); ++i) {
      check(labels[i] >= 0 && labels[i] < truth.cols,
            "ground-truth row {} has label {}, outside 0..{}", row, labels[i], truth.cols - 1);
      check(i == 0 || labels[i - 1] < labels[i],
            "ground-truth row {} is not sorted by label id or repeats label {}", row, labels[i]);
    }
    std::span<const int32_t> ranked = predictions.row(row);
    ranked = ranked.first(std::min(ranked.size(), static_cast<size_t>(kMaxK)));
    for (size_t i = 0; i < ranked.size(); ++i) {
      check(ranked[i] >= 0 && ranked[i] < truth.cols,
            "prediction row {} has label {}, outside 0..{}", row, ranked[i], truth.cols - 1);
      check(std::find(ranked.begin(), ranked.begin() + i, ranked[i]) == ranked.begin() + i,
            "prediction row {} ranks label {} twice", row, ranked[i]);
    }
  }
}

}  // namespace

MetricReport evaluate(const Rankings& predictions, const CsrMatrix& truth,
                      std::span<const double> propensities) {
  validate(predictions, truth, propensities);
  std::vector<double> inverse_propensity(propensities.size());
  for (size_t label = 0; label < propensities.size(); ++label) {
    inverse_propensity[label] = 1.0 / propensities[label];
  }

  // Rows are summed in fixed blocks, and the blocks in order, so the result is the same for
  // any number of threads.
  constexpr int64_t kBlockRows = 2048;
  const int64_t num_blocks = (truth.rows + kBlockRows - 1) / kBlockRows;
  std::vector<MetricSums> block_sums(static_cast<size_t>(num_blocks));
#pragma omp parallel
  {
    std::vector<double> truth_weights;
#pragma omp for schedule(dynamic)
    for (int64_t block = 0; block < num_blocks; ++block) {
      const int64_t end = std::min(truth.rows, (block + 1) * kBlockRows);
      for (int64_t row = block * kBlockRows; row < end; ++row) {
        std::span<const int32_t> ranked = predictions.row(row);
        ranked = ranked.first(std::min(ranked.size(), static_cast<size_t>(kMaxK)));
        add_row(truth.row_indices(row), ranked, inverse_propensity, truth_weights,
                block_sums[static_cast<size_t>(block)]);
      }
    }
  }
  MetricSums total;
  for (const MetricSums& sums : block_sums) total.add(sums);

  MetricReport report;
  report.rows = truth.rows;
  report.has_propensity_scored = !propensities.empty();
  const double rows = static_cast<double>(truth.rows);
  auto ratio = [](double sum, double best) { return best > 0 ? sum / best : 0.0; };
  for (int i = 0; i < kMaxK; ++i) {
    report.precision[i] = total.precision[i] / rows;
    report.ndcg[i] = total.ndcg[i] / rows;
    if (report.has_propensity_scored) {
      report.psp[i] = ratio(total.psp[i], total.best_psp[i]);
      report.psndcg[i] = ratio(total.psndcg[i], total.best_psndcg[i]);
    }
  }
  return report;
}

MetricReport evaluate(const CsrMatrix& scores, const CsrMatrix& truth,
                      std::span<const double> propensities) {
  return evaluate(top_k(scores, kMaxK), truth, propensities);
}

std::vector<std::pair<std::string, double>> MetricReport::named_values() const {
  std::vector<std::pair<std::string, double>> values;
  auto add = [&](const char* name, const std::array<double, kMaxK>& metric) {
    for (int i = 0; i < kMaxK; ++i)
      values.emplace_back(fmt::format("{}@{}", name, i + 1), metric[i]);
  };
  add("P", precision);
  add("nDCG", ndcg);
  if (has_propensity_scored) {
    add("PSP", psp);
    add("PSnDCG", psndcg);
  }
  return values;
}

}  // namespace haste
