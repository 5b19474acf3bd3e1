// Cohesion of a label grouping: mean pairwise cosine within groups, averaged over groups.
//
// For a group of m labels with unit vectors u_i (0 for an empty vector) and s = sum u_i,
// sum_{i != j} cos(u_i, u_j) = ||s||^2 - (number of non-empty u_i), so a group costs one pass
// over its vectors instead of m^2 dot products.
#include <algorithm>
#include <cmath>
#include <haste/error.hpp>
#include <haste/label_grouping.hpp>
#include <utility>
#include <vector>

namespace haste {
namespace {

// Mean over groups of 2+ labels; `squared_sum` returns {||s||^2, non-empty count} of a group.
template <typename SquaredSum>
double mean_over_groups(const LabelGrouping& grouping, SquaredSum squared_sum) {
  const int64_t G = grouping.num_groups();
  std::vector<double> cohesion(G, 0.0);
  std::vector<uint8_t> counted(G, 0);
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t group = 0; group < G; ++group) {
    std::span<const int32_t> members = grouping.group(group);
    const double m = static_cast<double>(members.size());
    if (m < 2) continue;
    auto [squares, non_empty] = squared_sum(members);
    cohesion[group] = (squares - non_empty) / (m * (m - 1));
    counted[group] = 1;
  }
  double total = 0;
  int64_t groups = 0;
  for (int64_t group = 0; group < G; ++group) {
    total += cohesion[group];
    groups += counted[group];
  }
  return groups > 0 ? total / groups : 0.0;
}

// 1 / ||values||, or 0 for an all-zero vector.
double inverse_norm(std::span<const float> values) {
  double squares = 0;
  for (float value : values) squares += double(value) * value;
  return squares > 0 ? 1 / std::sqrt(squares) : 0.0;
}

void check_ids(int64_t rows, const LabelGrouping& grouping) {
  for (int32_t label : grouping.order) {
    check(label >= 0 && label < rows, "group cohesion: label {} is outside the {} label vectors",
          label, rows);
  }
}

}  // namespace

double mean_group_cosine(const CsrMatrix& label_vectors, const LabelGrouping& grouping) {
  check_ids(label_vectors.rows, grouping);
  return mean_over_groups(grouping, [&](std::span<const int32_t> members) {
    // Sum the unit vectors by sorting their entries by feature: no width-F scratch needed.
    std::vector<std::pair<int32_t, double>> entries;
    double non_empty = 0;
    for (int32_t label : members) {
      std::span<const float> values = label_vectors.row_values(label);
      const double scale = inverse_norm(values);
      if (scale == 0) continue;
      non_empty += 1;
      std::span<const int32_t> indices = label_vectors.row_indices(label);
      for (size_t j = 0; j < indices.size(); ++j) {
        entries.emplace_back(indices[j], scale * values[j]);
      }
    }
    std::sort(entries.begin(), entries.end());
    double squares = 0;
    for (size_t j = 0; j < entries.size();) {
      double sum = 0;
      const int32_t feature = entries[j].first;
      for (; j < entries.size() && entries[j].first == feature; ++j) sum += entries[j].second;
      squares += sum * sum;
    }
    return std::pair{squares, non_empty};
  });
}

double mean_group_cosine(const DenseMatrix& label_vectors, const LabelGrouping& grouping) {
  check_ids(label_vectors.rows, grouping);
  return mean_over_groups(grouping, [&](std::span<const int32_t> members) {
    std::vector<double> sum(label_vectors.cols, 0.0);
    double non_empty = 0;
    for (int32_t label : members) {
      std::span<const float> v = label_vectors.row(label);
      const double scale = inverse_norm(v);
      if (scale == 0) continue;
      non_empty += 1;
      for (size_t p = 0; p < v.size(); ++p) sum[p] += scale * v[p];
    }
    double squares = 0;
    for (double s : sum) squares += s * s;
    return std::pair{squares, non_empty};
  });
}

}  // namespace haste
