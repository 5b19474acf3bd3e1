// What `haste data stats` prints: the size and shape of an XMC dataset's label distribution,
// the numbers papers quote and that decide the head/tail split (DESIGN.md section 7).
#pragma once

#include <cstdint>
#include <haste/dataset.hpp>
#include <string>

namespace haste {

// Quantiles of per-label positive counts (linear interpolation between order statistics, as
// numpy.quantile does by default).
struct FrequencyQuantiles {
  double min = 0, p25 = 0, p50 = 0, p75 = 0, p90 = 0, p99 = 0, max = 0;
};

struct DatasetStats {
  std::string source;  // the file(s) read, for display; set by the caller
  int64_t points = 0;
  int64_t features = 0;
  int64_t labels = 0;
  bool dense_features = false;
  int64_t labels_used = 0;  // labels with at least one positive
  int64_t positives = 0;    // nonzeros of the label matrix
  int64_t feature_nonzeros = 0;
  double labels_per_point = 0;
  double feature_nonzeros_per_point = 0;
  int64_t distinct_labelsets = 0;  // distinct label rows (the empty set counts once)
  int64_t points_without_labels = 0;
  FrequencyQuantiles frequency_all;   // over all L labels, unused ones counting 0
  FrequencyQuantiles frequency_used;  // over used labels only
  // Head: the ceil(10%) most frequent labels, the default head of DESIGN.md section 7.
  int64_t head_labels = 0;
  double head_positive_fraction = 0;  // share of all positives that fall on head labels
  int64_t head_min_frequency = 0;     // positives of the least frequent head label
  // Tail: used labels with few positives.
  int64_t labels_below_5 = 0;  // 1..4 positives
  int64_t labels_with_1 = 0;   // exactly 1 positive
};

constexpr double kDefaultHeadFraction = 0.10;

DatasetStats compute_stats(const Dataset& data);

// A table for people, and one JSON object for scripts (keys as in tests/python and
// ../shared/data/check_xc.py: rows, features, labels, labels_per_row, feat_nnz_per_row,
// labels_used, distinct_labelsets, rows_without_labels, plus the quantiles and head/tail).
std::string stats_table(const DatasetStats& stats);
std::string stats_json(const DatasetStats& stats);

}  // namespace haste
