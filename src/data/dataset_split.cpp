#include <algorithm>
#include <cmath>
#include <haste/dataset_split.hpp>
#include <haste/error.hpp>
#include <numeric>

#include "data/random.hpp"

namespace haste {

std::vector<int64_t> holdout_rows(int64_t rows, double test_fraction, uint64_t seed) {
  check(test_fraction > 0 && test_fraction < 1,
        "the test fraction {} must lie strictly between 0 and 1", test_fraction);
  const auto count = static_cast<int64_t>(std::llround(test_fraction * static_cast<double>(rows)));
  // A partial Fisher-Yates shuffle with our own generator, so the split is the same with every
  // standard library.
  std::vector<int64_t> order(static_cast<size_t>(rows));
  std::iota(order.begin(), order.end(), int64_t{0});
  Rng rng(hash_key(seed, 0x5b117));
  for (int64_t i = 0; i < count; ++i) {
    auto j = i + static_cast<int64_t>(rng.below(static_cast<uint64_t>(rows - i)));
    std::swap(order[i], order[j]);
  }
  order.resize(static_cast<size_t>(count));
  std::sort(order.begin(), order.end());
  return order;
}

namespace {

CsrMatrix select_csr_rows(const CsrMatrix& matrix, const std::vector<int64_t>& rows) {
  CsrMatrix out;
  out.cols = matrix.cols;
  for (int64_t row : rows) {
    out.append_row(matrix.row_indices(row),
                   matrix.values.empty() ? std::span<const float>{} : matrix.row_values(row));
  }
  return out;
}

}  // namespace

Dataset select_rows(const Dataset& data, const std::vector<int64_t>& rows) {
  Dataset out;
  out.labels = select_csr_rows(data.labels, rows);
  if (data.dense.cols > 0) {
    out.dense.cols = data.dense.cols;
    out.dense.rows = static_cast<int64_t>(rows.size());
    for (int64_t row : rows) {
      auto values = data.dense.row(row);
      out.dense.data.insert(out.dense.data.end(), values.begin(), values.end());
    }
  } else {
    out.features = select_csr_rows(data.features, rows);
  }
  return out;
}

DatasetSplit split_dataset(const Dataset& data, double test_fraction, uint64_t seed) {
  std::vector<int64_t> test_rows = holdout_rows(data.num_points(), test_fraction, seed);
  std::vector<int64_t> train_rows;
  train_rows.reserve(static_cast<size_t>(data.num_points()) - test_rows.size());
  auto next_test = test_rows.begin();
  for (int64_t row = 0; row < data.num_points(); ++row) {
    if (next_test != test_rows.end() && *next_test == row) {
      ++next_test;
    } else {
      train_rows.push_back(row);
    }
  }
  return {select_rows(data, train_rows), select_rows(data, test_rows)};
}

}  // namespace haste
