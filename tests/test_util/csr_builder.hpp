// Builds small CsrMatrix values from literal rows, for hand-written test cases.
#pragma once

#include <haste/sparse.hpp>
#include <utility>
#include <vector>

namespace haste::test {

// Rows of (index, value) pairs, indices increasing within a row.
inline CsrMatrix csr_with_values(int64_t cols,
                                 const std::vector<std::vector<std::pair<int32_t, float>>>& rows) {
  CsrMatrix matrix;
  matrix.cols = cols;
  for (const auto& row : rows) {
    std::vector<int32_t> indices;
    std::vector<float> values;
    for (auto [index, value] : row) {
      indices.push_back(index);
      values.push_back(value);
    }
    matrix.append_row(indices, values);
  }
  return matrix;
}

// Pattern-only rows (e.g. labels), indices increasing within a row.
inline CsrMatrix csr_pattern(int64_t cols, const std::vector<std::vector<int32_t>>& rows) {
  CsrMatrix matrix;
  matrix.cols = cols;
  for (const auto& row : rows) matrix.append_row(row, {});
  return matrix;
}

}  // namespace haste::test
