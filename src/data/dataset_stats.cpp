#include <fmt/format.h>
#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <haste/dataset_stats.hpp>
#include <nlohmann/json.hpp>
#include <numeric>
#include <unordered_set>
#include <vector>

namespace haste {
namespace {

// numpy.quantile's default (linear) rule on sorted values.
double quantile(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) return 0.0;
  double position = q * static_cast<double>(sorted.size() - 1);
  size_t below = static_cast<size_t>(std::floor(position));
  size_t above = std::min(below + 1, sorted.size() - 1);
  double weight = position - static_cast<double>(below);
  return static_cast<double>(sorted[below]) +
         weight * static_cast<double>(sorted[above] - sorted[below]);
}

FrequencyQuantiles quantiles_of(const std::vector<int64_t>& sorted) {
  return {quantile(sorted, 0.0),  quantile(sorted, 0.25), quantile(sorted, 0.5),
          quantile(sorted, 0.75), quantile(sorted, 0.9),  quantile(sorted, 0.99),
          quantile(sorted, 1.0)};
}

// Distinct rows of a CSR pattern, compared exactly (the hash only buckets them).
int64_t count_distinct_rows(const CsrMatrix& matrix) {
  auto hash = [&](int64_t row) {
    auto ids = matrix.row_indices(row);
    return static_cast<size_t>(XXH3_64bits(ids.data(), ids.size_bytes()));
  };
  auto equal = [&](int64_t a, int64_t b) {
    auto x = matrix.row_indices(a);
    auto y = matrix.row_indices(b);
    return std::equal(x.begin(), x.end(), y.begin(), y.end());
  };
  std::unordered_set<int64_t, decltype(hash), decltype(equal)> rows(
      static_cast<size_t>(matrix.rows), hash, equal);
  for (int64_t row = 0; row < matrix.rows; ++row) rows.insert(row);
  return static_cast<int64_t>(rows.size());
}

int64_t count_feature_nonzeros(const Dataset& data) {
  if (data.dense.cols == 0) return data.features.nnz();
  return std::count_if(data.dense.data.begin(), data.dense.data.end(),
                       [](float v) { return v != 0.0f; });
}

// "1234567" -> "1,234,567".
std::string grouped(int64_t value) {
  std::string digits = std::to_string(value < 0 ? -value : value);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return value < 0 ? "-" + out : out;
}

// Quantiles are whole numbers unless interpolated; print them without noise either way.
std::string quantile_text(double value) {
  return value == std::floor(value) ? grouped(static_cast<int64_t>(value))
                                    : fmt::format("{:.1f}", value);
}

nlohmann::ordered_json quantiles_json(const FrequencyQuantiles& q) {
  return {{"min", q.min}, {"p25", q.p25}, {"p50", q.p50}, {"p75", q.p75},
          {"p90", q.p90}, {"p99", q.p99}, {"max", q.max}};
}

}  // namespace

DatasetStats compute_stats(const Dataset& data) {
  DatasetStats stats;
  const CsrMatrix& labels = data.labels;
  stats.points = data.num_points();
  stats.features = data.num_features();
  stats.labels = data.num_labels();
  stats.dense_features = data.dense.cols > 0;
  stats.positives = labels.nnz();
  stats.feature_nonzeros = count_feature_nonzeros(data);
  if (stats.points > 0) {
    stats.labels_per_point = static_cast<double>(stats.positives) / stats.points;
    stats.feature_nonzeros_per_point = static_cast<double>(stats.feature_nonzeros) / stats.points;
  }
  for (int64_t row = 0; row < labels.rows; ++row) {
    if (labels.indptr[row + 1] == labels.indptr[row]) ++stats.points_without_labels;
  }
  stats.distinct_labelsets = count_distinct_rows(labels);

  std::vector<int64_t> frequency(static_cast<size_t>(stats.labels), 0);
  for (int32_t label : labels.indices) ++frequency[static_cast<size_t>(label)];
  std::sort(frequency.begin(), frequency.end());
  auto first_used = std::upper_bound(frequency.begin(), frequency.end(), int64_t{0});
  std::vector<int64_t> used(first_used, frequency.end());
  stats.labels_used = static_cast<int64_t>(used.size());
  stats.frequency_all = quantiles_of(frequency);
  stats.frequency_used = quantiles_of(used);
  stats.labels_below_5 = std::count_if(used.begin(), used.end(), [](int64_t f) { return f < 5; });
  stats.labels_with_1 = std::count(used.begin(), used.end(), int64_t{1});

  stats.head_labels =
      static_cast<int64_t>(std::ceil(kDefaultHeadFraction * static_cast<double>(stats.labels)));
  if (stats.head_labels > 0) {
    auto head_begin = frequency.end() - stats.head_labels;
    int64_t head_positives = std::accumulate(head_begin, frequency.end(), int64_t{0});
    stats.head_min_frequency = *head_begin;
    if (stats.positives > 0) {
      stats.head_positive_fraction = static_cast<double>(head_positives) / stats.positives;
    }
  }
  return stats;
}

std::string stats_table(const DatasetStats& s) {
  std::string out;
  auto line = [&](const char* name, const std::string& value) {
    out += fmt::format("{:<22}{}\n", name, value);
  };
  if (!s.source.empty()) line("dataset", s.source);
  line("points", grouped(s.points));
  line("features",
       fmt::format("{} ({}, {:.2f} nonzeros/point)", grouped(s.features),
                   s.dense_features ? "dense" : "sparse", s.feature_nonzeros_per_point));
  line("labels", fmt::format("{} ({} used)", grouped(s.labels), grouped(s.labels_used)));
  line("labels/point", fmt::format("{:.3f}", s.labels_per_point));
  line("distinct label sets", grouped(s.distinct_labelsets));
  line("points without labels", grouped(s.points_without_labels));
  out += fmt::format("\n{:<22}", "positives per label");
  for (const char* column : {"min", "25%", "50%", "75%", "90%", "99%", "max"}) {
    out += fmt::format("{:>8}", column);
  }
  out += '\n';
  auto row = [&](const char* name, const FrequencyQuantiles& q) {
    out += fmt::format("  {:<20}", name);
    for (double v : {q.min, q.p25, q.p50, q.p75, q.p90, q.p99, q.max}) {
      out += fmt::format("{:>8}", quantile_text(v));
    }
    out += '\n';
  };
  row("all labels", s.frequency_all);
  row("used labels", s.frequency_used);
  out += '\n';
  line("head (top 10%)",
       fmt::format("{} labels hold {:.1f}% of positives (each has >= {})", grouped(s.head_labels),
                   100.0 * s.head_positive_fraction, grouped(s.head_min_frequency)));
  line("tail", fmt::format("{} used labels have < 5 positives, {} have exactly 1",
                           grouped(s.labels_below_5), grouped(s.labels_with_1)));
  return out;
}

std::string stats_json(const DatasetStats& s) {
  nlohmann::ordered_json j = {
      {"source", s.source},
      {"rows", s.points},
      {"features", s.features},
      {"labels", s.labels},
      {"dense_features", s.dense_features},
      {"labels_used", s.labels_used},
      {"positives", s.positives},
      {"feature_nonzeros", s.feature_nonzeros},
      {"labels_per_row", s.labels_per_point},
      {"feat_nnz_per_row", s.feature_nonzeros_per_point},
      {"distinct_labelsets", s.distinct_labelsets},
      {"rows_without_labels", s.points_without_labels},
      {"label_frequency",
       {{"all", quantiles_json(s.frequency_all)}, {"used", quantiles_json(s.frequency_used)}}},
      {"head",
       {{"fraction_of_labels", kDefaultHeadFraction},
        {"labels", s.head_labels},
        {"positive_fraction", s.head_positive_fraction},
        {"min_frequency", s.head_min_frequency}}},
      {"tail", {{"labels_below_5", s.labels_below_5}, {"labels_with_1", s.labels_with_1}}},
  };
  return j.dump(2);
}

}  // namespace haste
