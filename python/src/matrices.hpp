// The library's containers as Python sees them: _core.CsrMatrix and _core.DenseMatrix are built
// from NumPy arrays (copied and validated), _core.Dataset from them (moved, not copied), and
// library results go back to Python as NumPy arrays that own the library's buffers.
#pragma once

#include <haste/dataset.hpp>
#include <haste/metrics.hpp>
#include <haste/sparse.hpp>

#include "arrays.hpp"

namespace haste::python {

// (indptr int64, indices int32, values float32 or None, (rows, cols)): what
// scipy.sparse.csr_matrix((values, indices, indptr), shape) takes. Moves the buffers out.
nb::tuple export_csr(CsrMatrix&& matrix);
OutArray<float> export_dense(DenseMatrix&& matrix);
// (features tuple or None, dense array or None, labels tuple)
nb::tuple export_dataset(Dataset&& data);

// Top-k label arrays [N, k], best first, padded with -1 where a row has fewer than k labels.
Rankings import_top_k(const InArray<int32_t>& labels, int64_t num_labels);
// (labels int32 [N, k], scores float32 [N, k]) of scored rankings, padded with -1 and -inf.
nb::tuple export_top_k(const Rankings& rankings, int k);

// Puts a dataset into a model's feature space (a test set may have been written with fewer
// features than the training set). Labels are widened in the same way to `num_labels`.
void widen(Dataset& data, int64_t num_features, int64_t num_labels);

}  // namespace haste::python
