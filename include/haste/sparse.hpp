// Row-compressed sparse and row-major dense matrices: the containers every module exchanges.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace haste {

// CSR matrix. Within a row, indices are strictly increasing (readers sort and reject
// duplicates). `values` is empty for a pattern-only matrix, e.g. a label matrix whose
// nonzeros are all 1.
struct CsrMatrix {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<int64_t> indptr{0};  // rows + 1 offsets into indices/values
  std::vector<int32_t> indices;
  std::vector<float> values;

  int64_t nnz() const { return static_cast<int64_t>(indices.size()); }
  bool has_values() const { return !values.empty() || indices.empty(); }

  std::span<const int32_t> row_indices(int64_t row) const {
    return {indices.data() + indptr[row], static_cast<size_t>(indptr[row + 1] - indptr[row])};
  }
  std::span<const float> row_values(int64_t row) const {
    return {values.data() + indptr[row], static_cast<size_t>(indptr[row + 1] - indptr[row])};
  }

  // Appends one row; `row_values` may be empty for a pattern-only matrix.
  void append_row(std::span<const int32_t> row_indices, std::span<const float> row_values) {
    indices.insert(indices.end(), row_indices.begin(), row_indices.end());
    values.insert(values.end(), row_values.begin(), row_values.end());
    indptr.push_back(static_cast<int64_t>(indices.size()));
    ++rows;
  }
};

// Row-major dense matrix (dense input features, e.g. embeddings from a .npy file).
struct DenseMatrix {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<float> data;

  std::span<const float> row(int64_t r) const {
    return {data.data() + r * cols, static_cast<size_t>(cols)};
  }
};

}  // namespace haste
