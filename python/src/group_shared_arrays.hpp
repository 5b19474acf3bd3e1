// The group-shared tail seen through DLPack arrays: its shape from the arrays' shapes, and spans
// over them. Shared by the CPU bindings (group_shared.cpp) and the CUDA ones (cuda/).
#pragma once

#include <nanobind/ndarray.h>

#include <cstdint>
#include <haste/error.hpp>
#include <haste/group_shared.hpp>
#include <span>

#include "arrays.hpp"

namespace haste::python {

template <typename Array>
auto span_of(const Array& array) {
  return std::span(array.data(), array.size());
}

// G and k from indices [G, k], g from label rows [G*g, k] (the weights or their gradient), d
// from the caller. Throws haste::Error naming both shapes when they do not fit together.
template <typename Indices, typename Rows>
GroupSharedShape group_shared_shape(const Indices& indices, const Rows& label_rows, int64_t d) {
  check(indices.ndim() == 2 && label_rows.ndim() == 2,
        "indices [G, k] and weights [G*g, k] must be 2-D arrays (got {}-D and {}-D)",
        indices.ndim(), label_rows.ndim());
  const auto G = static_cast<int64_t>(indices.shape(0)), k = static_cast<int64_t>(indices.shape(1));
  const auto rows = static_cast<int64_t>(label_rows.shape(0));
  check(G >= 1 && rows % G == 0 && static_cast<int64_t>(label_rows.shape(1)) == k,
        "weights [{}, {}] do not fit indices [{}, {}]: they must be [G*g, k]", rows,
        label_rows.shape(1), G, k);
  GroupSharedShape shape{d, G, rows / G, k};
  shape.validate();
  return shape;
}

// Rows of a matrix that must have `cols` columns.
template <typename Array>
int64_t rows_of(const Array& matrix, int64_t cols, const char* name) {
  check(matrix.ndim() == 2 && static_cast<int64_t>(matrix.shape(1)) == cols,
        "{} must be a 2-D array with {} columns (got {}-D, {} columns)", name, cols, matrix.ndim(),
        matrix.ndim() == 2 ? static_cast<int64_t>(matrix.shape(1)) : 0);
  return static_cast<int64_t>(matrix.shape(0));
}

}  // namespace haste::python
