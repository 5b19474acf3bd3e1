// _core.CsrMatrix, _core.DenseMatrix, _core.Dataset (see matrices.hpp).
#include "matrices.hpp"

#include <nanobind/stl/optional.h>

#include <algorithm>
#include <haste/error.hpp>
#include <limits>
#include <optional>

#include "bindings.hpp"

namespace haste::python {
namespace {

// The CsrMatrix invariants the library relies on; scipy does not guarantee sorted indices.
CsrMatrix make_csr(const InArray<int64_t>& indptr, const InArray<int32_t>& indices,
                   const std::optional<InArray<float>>& values, int64_t cols) {
  check(indptr.ndim() == 1 && indices.ndim() == 1 && (!values || values->ndim() == 1),
        "CSR arrays must be one-dimensional");
  check(indptr.size() >= 1 && indptr.data()[0] == 0, "CSR indptr must start with 0");
  check(cols >= 0, "CSR matrix: {} columns", cols);
  CsrMatrix matrix;
  matrix.rows = static_cast<int64_t>(indptr.size()) - 1;
  matrix.cols = cols;
  matrix.indptr = to_vector(indptr);
  matrix.indices = to_vector(indices);
  if (values) {
    check(values->size() == indices.size(), "CSR matrix: {} values for {} indices", values->size(),
          indices.size());
    matrix.values = to_vector(*values);
  }
  check(matrix.indptr.back() == matrix.nnz(), "CSR indptr ends at {} but there are {} indices",
        matrix.indptr.back(), matrix.nnz());
  for (int64_t r = 0; r < matrix.rows; ++r) {
    check(matrix.indptr[r] <= matrix.indptr[r + 1], "CSR indptr decreases at row {}", r);
    int64_t previous = -1;
    for (int32_t c : matrix.row_indices(r)) {
      check(c > previous && c < cols,
            "row {}: column {} is out of order, repeated or outside [0, {}) (call "
            "sum_duplicates() and sort_indices() on the scipy matrix)",
            r, c, cols);
      previous = c;
    }
  }
  return matrix;
}

DenseMatrix make_dense(const InArray<float>& array) {
  check(array.ndim() == 2, "dense features must be a 2-D array, not {}-D", array.ndim());
  DenseMatrix matrix;
  matrix.rows = static_cast<int64_t>(array.shape(0));
  matrix.cols = static_cast<int64_t>(array.shape(1));
  matrix.data = to_vector(array);
  return matrix;
}

// Features (a CsrMatrix or a DenseMatrix) and labels (a CsrMatrix, or None for inputs to
// predict) are moved into the dataset: the Python objects are left empty.
Dataset make_dataset(nb::handle features, nb::handle labels) {
  Dataset data;
  if (nb::isinstance<CsrMatrix>(features)) {
    data.features = std::move(*nb::inst_ptr<CsrMatrix>(features));
  } else if (nb::isinstance<DenseMatrix>(features)) {
    data.dense = std::move(*nb::inst_ptr<DenseMatrix>(features));
  } else {
    fail("dataset features must be a CsrMatrix or a DenseMatrix");
  }
  const int64_t rows = data.dense.cols > 0 ? data.dense.rows : data.features.rows;
  if (labels.is_none()) {
    data.labels.rows = rows;
    data.labels.indptr.assign(static_cast<size_t>(rows) + 1, 0);
  } else {
    data.labels = std::move(*nb::inst_ptr<CsrMatrix>(labels));
    data.labels.values.clear();  // labels are a pattern
    check(data.labels.rows == rows, "{} rows of features but {} rows of labels", rows,
          data.labels.rows);
  }
  return data;
}

}  // namespace

nb::tuple export_csr(CsrMatrix&& matrix) {
  const int64_t rows = matrix.rows, cols = matrix.cols;
  nb::object values =
      matrix.values.empty() ? nb::none() : nb::cast(to_numpy(std::move(matrix.values)));
  return nb::make_tuple(to_numpy(std::move(matrix.indptr)), to_numpy(std::move(matrix.indices)),
                        values, nb::make_tuple(rows, cols));
}

OutArray<float> export_dense(DenseMatrix&& matrix) {
  return to_numpy(std::move(matrix.data),
                  {static_cast<size_t>(matrix.rows), static_cast<size_t>(matrix.cols)});
}

nb::tuple export_dataset(Dataset&& data) {
  const bool dense = data.dense.cols > 0;
  nb::object features = dense ? nb::none() : nb::object(export_csr(std::move(data.features)));
  nb::object dense_features = dense ? nb::cast(export_dense(std::move(data.dense))) : nb::none();
  return nb::make_tuple(features, dense_features, export_csr(std::move(data.labels)));
}

Rankings import_top_k(const InArray<int32_t>& labels, int64_t num_labels) {
  check(labels.ndim() == 2, "top-k predictions must be a 2-D array [rows, k], not {}-D",
        labels.ndim());
  const int64_t rows = static_cast<int64_t>(labels.shape(0));
  const int64_t k = static_cast<int64_t>(labels.shape(1));
  Rankings rankings;
  rankings.cols = num_labels;
  std::vector<int32_t> row;
  for (int64_t r = 0; r < rows; ++r) {
    row.clear();
    for (const int32_t* label = labels.data() + r * k; label != labels.data() + (r + 1) * k;
         ++label) {
      if (*label < 0) break;  // padding: the row ends here
      row.push_back(*label);
    }
    rankings.append_row(row);
  }
  return rankings;
}

nb::tuple export_top_k(const Rankings& rankings, int k) {
  check(rankings.has_scores(), "export_top_k: the rankings carry no scores");
  std::vector<int32_t> labels(static_cast<size_t>(rankings.rows) * k, -1);
  std::vector<float> scores(labels.size(), -std::numeric_limits<float>::infinity());
  for (int64_t r = 0; r < rankings.rows; ++r) {
    const size_t kept = std::min<size_t>(rankings.row(r).size(), k);
    std::copy_n(rankings.row(r).begin(), kept, labels.begin() + r * k);
    std::copy_n(rankings.row_scores(r).begin(), kept, scores.begin() + r * k);
  }
  const std::initializer_list<size_t> shape{static_cast<size_t>(rankings.rows),
                                            static_cast<size_t>(k)};
  return nb::make_tuple(to_numpy(std::move(labels), shape), to_numpy(std::move(scores), shape));
}

void widen(Dataset& data, int64_t num_features, int64_t num_labels) {
  check(data.num_features() <= num_features && data.num_labels() <= num_labels,
        "the data has {} features and {} labels but the model knows only {} and {}",
        data.num_features(), data.num_labels(), num_features, num_labels);
  check(data.dense.cols == 0 || data.dense.cols == num_features,
        "the data has {} dense features per row; the model expects {}", data.dense.cols,
        num_features);
  if (data.dense.cols == 0) data.features.cols = num_features;
  data.labels.cols = num_labels;
}

void bind_matrices(nb::module_& m) {
  nb::class_<CsrMatrix>(m, "CsrMatrix", "A CSR matrix owned by the library (copied in)")
      .def(nb::new_(&make_csr), nb::arg("indptr"), nb::arg("indices"), nb::arg("values").none(),
           nb::arg("cols"))
      .def_ro("rows", &CsrMatrix::rows)
      .def_ro("cols", &CsrMatrix::cols)
      .def_prop_ro("nnz", &CsrMatrix::nnz);
  nb::class_<DenseMatrix>(m, "DenseMatrix", "A row-major float32 matrix owned by the library")
      .def(nb::new_(&make_dense), nb::arg("array"))
      .def_ro("rows", &DenseMatrix::rows)
      .def_ro("cols", &DenseMatrix::cols);
  nb::class_<Dataset>(m, "Dataset", "Features and labels; takes over the matrices given to it")
      .def(nb::new_(&make_dataset), nb::arg("features"), nb::arg("labels").none())
      .def_prop_ro("num_points", &Dataset::num_points)
      .def_prop_ro("num_features", &Dataset::num_features)
      .def_prop_ro("num_labels", &Dataset::num_labels);
}

}  // namespace haste::python
