// Ranking metrics of extreme classification: P@k, nDCG@k and their propensity-scored variants
// PSP@k, PSnDCG@k, for k = 1..5.
//
// Definitions follow napkinXC's metrics (napkinxc.metrics, checked against it in
// tests/python/test_metrics_vs_napkinxc.py), which agree with the Extreme Classification
// Repository's. For one row with true labels T, top-k predictions r_1..r_k (best first; a row
// may have fewer than k) and inverse propensities q_l = 1 / p_l:
//   P@k      = |{i <= k : r_i in T}| / k                       (always divided by k)
//   DCG@k    = sum_{i <= k, r_i in T} 1 / log2(i + 1)
//   nDCG@k   = DCG@k / IDCG@k, IDCG@k = sum_{i <= min(k, |T|)} 1 / log2(i + 1)
//   PSP@k    = sum_{i <= k, r_i in T} q_{r_i} / k
//   PSDCG@k  = sum_{i <= k, r_i in T} q_{r_i} / log2(i + 1)
// P@k and nDCG@k are averaged over all rows. PSP@k and PSnDCG@k are normalised the XMC way: the
// sum over rows divided by the sum over rows of the best achievable value (the same formula with
// the row's true labels ranked by decreasing q), i.e. a ratio of sums, not a mean of ratios:
//   PSP@k    = sum_rows PSP@k / sum_rows bestPSP@k
//   PSnDCG@k = sum_rows (PSDCG@k / IDCG@k) / sum_rows (bestPSDCG@k / IDCG@k)
// Rows with no true labels (napkinXC's convention, zero_division = 0): they count as rows and
// score 0 for P@k and nDCG@k, and add 0 to both sums of the PS metrics, so they do not change
// PSP/PSnDCG. If no row has a true label, the PS metrics are 0 (napkinXC would give 0/0).
#pragma once

#include <array>
#include <cstdint>
#include <haste/sparse.hpp>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace haste {

// Metrics are reported at k = 1..kMaxK.
inline constexpr int kMaxK = 5;

// Jain et al. 2016 propensity model: the chance that a relevant label l is observed,
//   p_l = 1 / (1 + C * exp(-A * log(N_l + B))),  C = (log N - 1) * (B + 1)^A,
// N = training points, N_l = training points that carry label l. Rare labels get small p_l and
// so a large weight 1 / p_l in the PS metrics. Usual per-dataset values: A = 0.5, B = 0.4 for
// Wikipedia (WikiLSHTC-325K, WikipediaLarge-500K), A = 0.6, B = 2.6 for Amazon (Amazon-670K,
// Amazon-3M), and the defaults A = 0.55, B = 1.5 for everything else.
inline constexpr double kDefaultPropensityA = 0.55;
inline constexpr double kDefaultPropensityB = 1.5;

// One propensity per label, from per-label training counts and the number of training points.
std::vector<double> jain_propensities(std::span<const int64_t> label_counts, int64_t num_points,
                                      double A = kDefaultPropensityA,
                                      double B = kDefaultPropensityB);
// The same from a training label matrix (N x L); one propensity per column.
std::vector<double> jain_propensities(const CsrMatrix& train_labels, double A = kDefaultPropensityA,
                                      double B = kDefaultPropensityB);

// How many rows of `labels` carry each label (column counts).
std::vector<int64_t> label_counts(const CsrMatrix& labels);

// Per-row predictions as label ids ordered best first (a row may be shorter than kMaxK, or
// empty). This is what a model's top-k produces; `cols` is L, the label space. The producer's
// scores (a model's logits, a score matrix's values) ride along, one per label, when it has
// them; rankings read from a file of bare label ids have none.
struct Rankings {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<int64_t> offsets{0};  // rows + 1 offsets into labels (and scores)
  std::vector<int32_t> labels;
  std::vector<float> scores;  // empty, or one per entry of labels

  bool has_scores() const { return scores.size() == labels.size(); }
  std::span<const int32_t> row(int64_t r) const {
    return {labels.data() + offsets[r], static_cast<size_t>(offsets[r + 1] - offsets[r])};
  }
  // The scores of row r (empty when the rankings have none).
  std::span<const float> row_scores(int64_t r) const {
    if (scores.empty()) return {};
    return {scores.data() + offsets[r], static_cast<size_t>(offsets[r + 1] - offsets[r])};
  }
  // Appends a row, best first. Give `ranked_scores` (one per label) for every row or for none:
  // mixing throws haste::Error.
  void append_row(std::span<const int32_t> ranked_labels,
                  std::span<const float> ranked_scores = {});
};

// The `k` best labels of each row of a score matrix (indices sorted by id, values are scores),
// best first. Ties are broken by the lower label id, so the result does not depend on how a
// sort treats equal keys. NaN scores are an error.
Rankings top_k(const CsrMatrix& scores, int k = kMaxK);

struct MetricReport {
  int64_t rows = 0;
  // Index k - 1 holds the metric at k; values are fractions in [0, 1].
  std::array<double, kMaxK> precision{};
  std::array<double, kMaxK> ndcg{};
  bool has_propensity_scored = false;  // false when evaluated without propensities
  std::array<double, kMaxK> psp{};
  std::array<double, kMaxK> psndcg{};

  // ("P@1", value), ... ("nDCG@5", ...), then ("PSP@1", ...) ... ("PSnDCG@5", ...) when
  // present: the names used in the CLI's JSON and in benchmark results.
  std::vector<std::pair<std::string, double>> named_values() const;
};

// Metrics of `predictions` against `truth` (N x L, pattern only). `propensities` holds one p_l
// per label, or is empty to skip the PS metrics. Throws haste::Error when the row counts or
// label spaces disagree, a label id is out of range, or there are no rows.
MetricReport evaluate(const Rankings& predictions, const CsrMatrix& truth,
                      std::span<const double> propensities = {});
// The same from an N x L score matrix: ranks each row by score (see top_k).
MetricReport evaluate(const CsrMatrix& scores, const CsrMatrix& truth,
                      std::span<const double> propensities = {});

}  // namespace haste
