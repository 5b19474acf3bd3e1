// PIFA label vectors: row l of Y^T X_n, normalised, where X_n is X with unit rows.
//
// Y is transposed once (label -> its positive rows), then each label sums its rows into a dense
// per-thread scratch of width F. The scratch is cleared through the list of features the label
// touched, so a label costs O(its nonzeros), and memory is O(F) per thread whatever L is: no
// L x F dense matrix ever exists.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <haste/error.hpp>
#include <haste/label_grouping.hpp>
#include <limits>
#include <vector>

namespace haste {
namespace {

// Labels per parallel work item: enough to amortise scheduling, few enough that a handful of
// very frequent labels do not leave the other threads idle.
constexpr int64_t kLabelsPerChunk = 256;

// Y^T in CSR form: for each label, the ascending rows that carry it. Checks the label ids.
CsrMatrix label_rows(const CsrMatrix& labels) {
  check(labels.rows <= std::numeric_limits<int32_t>::max(),
        "label vectors: {} training rows exceed the int32 row ids", labels.rows);
  CsrMatrix transposed;
  transposed.rows = labels.cols;
  transposed.cols = labels.rows;
  transposed.indptr.assign(labels.cols + 1, 0);
  for (int64_t row = 0; row < labels.rows; ++row) {
    for (int32_t label : labels.row_indices(row)) {
      check(label >= 0 && label < labels.cols,
            "label vectors: training row {} has label id {} outside [0, {})", row, label,
            labels.cols);
      ++transposed.indptr[label + 1];
    }
  }
  for (int64_t label = 0; label < labels.cols; ++label) {
    transposed.indptr[label + 1] += transposed.indptr[label];
  }
  transposed.indices.resize(labels.indices.size());
  std::vector<int64_t> next(transposed.indptr.begin(), transposed.indptr.end() - 1);
  for (int64_t row = 0; row < labels.rows; ++row) {
    for (int32_t label : labels.row_indices(row)) {
      transposed.indices[next[label]++] = static_cast<int32_t>(row);
    }
  }
  return transposed;
}

void check_row_counts(int64_t feature_rows, const CsrMatrix& labels) {
  check(feature_rows == labels.rows,
        "label vectors: the feature matrix has {} rows but the label matrix has {}", feature_rows,
        labels.rows);
}

// 1 / ||row|| for every row (0 for an all-zero row). Throws naming the first row that has a
// non-finite value or, for sparse rows, a feature id outside [0, cols).
template <typename RowNorm, typename Describe>
std::vector<double> inverse_row_norms(int64_t rows, RowNorm row_norm, Describe describe_row) {
  std::vector<double> inverse(rows);
  int64_t first_bad = rows;
#pragma omp parallel for schedule(static) reduction(min : first_bad)
  for (int64_t row = 0; row < rows; ++row) {
    double norm = row_norm(row);  // NaN flags a bad row
    if (!std::isfinite(norm)) {
      first_bad = std::min(first_bad, row);
      norm = 0;
    }
    inverse[row] = norm > 0 ? 1.0 / norm : 0.0;
  }
  if (first_bad < rows) {
    fail("label vectors: training row {}: {}", first_bad, describe_row(first_bad));
  }
  return inverse;
}

// Per-thread accumulator of one sparse label vector.
struct SparseAccumulator {
  std::vector<double> sum;    // width F, zero outside `touched`
  std::vector<uint8_t> seen;  // width F
  std::vector<int32_t> touched;

  explicit SparseAccumulator(int64_t width) : sum(width, 0.0), seen(width, 0) {}

  void add(std::span<const int32_t> indices, std::span<const float> values, double scale) {
    for (size_t j = 0; j < indices.size(); ++j) {
      int32_t feature = indices[j];
      if (!seen[feature]) {
        seen[feature] = 1;
        touched.push_back(feature);
      }
      sum[feature] += scale * values[j];
    }
  }

  // Appends the normalised sum as a row of `out` (sorted, exact zeros dropped) and clears.
  void emit_and_clear(CsrMatrix& out) {
    std::sort(touched.begin(), touched.end());
    double squares = 0;
    for (int32_t feature : touched) squares += sum[feature] * sum[feature];
    double scale = squares > 0 ? 1.0 / std::sqrt(squares) : 0.0;
    for (int32_t feature : touched) {
      if (scale > 0 && sum[feature] != 0) {
        out.indices.push_back(feature);
        out.values.push_back(static_cast<float>(sum[feature] * scale));
      }
      sum[feature] = 0;
      seen[feature] = 0;
    }
    out.indptr.push_back(static_cast<int64_t>(out.indices.size()));
    ++out.rows;
    touched.clear();
  }
};

// Stitches per-chunk row blocks into one matrix, in chunk order.
CsrMatrix concatenate_rows(std::vector<CsrMatrix>& parts, int64_t cols) {
  CsrMatrix out;
  out.cols = cols;
  std::vector<int64_t> offsets(parts.size() + 1, 0);
  for (size_t p = 0; p < parts.size(); ++p) {
    offsets[p + 1] = offsets[p] + parts[p].nnz();
    out.rows += parts[p].rows;
  }
  out.indices.resize(offsets.back());
  out.values.resize(offsets.back());
  out.indptr.resize(out.rows + 1);
  std::vector<int64_t> first_row(parts.size() + 1, 0);
  for (size_t p = 0; p < parts.size(); ++p) first_row[p + 1] = first_row[p] + parts[p].rows;
#pragma omp parallel for schedule(dynamic)
  for (int64_t p = 0; p < static_cast<int64_t>(parts.size()); ++p) {
    CsrMatrix& part = parts[p];
    std::copy(part.indices.begin(), part.indices.end(), out.indices.begin() + offsets[p]);
    std::copy(part.values.begin(), part.values.end(), out.values.begin() + offsets[p]);
    for (int64_t r = 0; r < part.rows; ++r) {
      out.indptr[first_row[p] + r + 1] = offsets[p] + part.indptr[r + 1];
    }
    part = CsrMatrix{};  // release as we go: peak memory stays near one copy of the output
  }
  return out;
}

}  // namespace

CsrMatrix pifa_label_vectors(const CsrMatrix& features, const CsrMatrix& labels) {
  check_row_counts(features.rows, labels);
  check(features.has_values(), "label vectors: the feature matrix has no values");
  const int64_t F = features.cols;
  std::vector<double> inverse_norm = inverse_row_norms(
      features.rows,
      [&](int64_t row) {
        double squares = 0;
        for (int32_t feature : features.row_indices(row)) {
          if (feature < 0 || feature >= F) return std::numeric_limits<double>::quiet_NaN();
        }
        for (float value : features.row_values(row)) squares += double(value) * value;
        return std::sqrt(squares);
      },
      [&](int64_t) {
        return fmt::format("a feature id outside [0, {}) or a non-finite feature value", F);
      });
  const CsrMatrix rows_of_label = label_rows(labels);

  const int64_t L = labels.cols;
  const int64_t num_chunks = (L + kLabelsPerChunk - 1) / kLabelsPerChunk;
  std::vector<CsrMatrix> parts(num_chunks);
#pragma omp parallel
  {
    SparseAccumulator accumulator(F);
#pragma omp for schedule(dynamic)
    for (int64_t chunk = 0; chunk < num_chunks; ++chunk) {
      CsrMatrix& part = parts[chunk];
      part.cols = F;
      const int64_t end = std::min(L, (chunk + 1) * kLabelsPerChunk);
      for (int64_t label = chunk * kLabelsPerChunk; label < end; ++label) {
        for (int32_t row : rows_of_label.row_indices(label)) {
          accumulator.add(features.row_indices(row), features.row_values(row), inverse_norm[row]);
        }
        accumulator.emit_and_clear(part);
      }
    }
  }
  return concatenate_rows(parts, F);
}

DenseMatrix pifa_label_vectors(const DenseMatrix& features, const CsrMatrix& labels) {
  check_row_counts(features.rows, labels);
  const int64_t D = features.cols;
  std::vector<double> inverse_norm = inverse_row_norms(
      features.rows,
      [&](int64_t row) {
        double squares = 0;
        for (float value : features.row(row)) squares += double(value) * value;
        return std::sqrt(squares);
      },
      [](int64_t) { return std::string("a non-finite feature value"); });
  const CsrMatrix rows_of_label = label_rows(labels);

  DenseMatrix out;
  out.rows = labels.cols;
  out.cols = D;
  out.data.assign(out.rows * D, 0.0f);
#pragma omp parallel
  {
    std::vector<double> sum(D);
#pragma omp for schedule(dynamic, kLabelsPerChunk)
    for (int64_t label = 0; label < out.rows; ++label) {
      std::fill(sum.begin(), sum.end(), 0.0);
      for (int32_t row : rows_of_label.row_indices(label)) {
        const float* x = features.data.data() + row * D;
        const double scale = inverse_norm[row];
        for (int64_t j = 0; j < D; ++j) sum[j] += scale * x[j];
      }
      double squares = 0;
      for (int64_t j = 0; j < D; ++j) squares += sum[j] * sum[j];
      if (squares > 0) {
        const double scale = 1.0 / std::sqrt(squares);
        float* y = out.data.data() + label * D;
        for (int64_t j = 0; j < D; ++j) y[j] = static_cast<float>(sum[j] * scale);
      }
    }
  }
  return out;
}

}  // namespace haste
