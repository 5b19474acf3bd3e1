// The group-shared tail's CPU kernels, its loss and DST for haste.torch. Arrays come in through
// DLPack (PyTorch tensors, NumPy arrays: anything nanobind's ndarray takes), so the extension
// needs no PyTorch to build. Outputs are written into arrays the caller allocated; the kernels
// run with the GIL released. float32 and float64 are bound under the same names (nanobind picks
// by dtype): float64 is for torch.autograd.gradcheck.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <haste/dst.hpp>
#include <haste/error.hpp>
#include <haste/group_shared.hpp>
#include <haste/sparse.hpp>
#include <haste/tail_loss.hpp>
#include <optional>
#include <span>
#include <string>

#include "arrays.hpp"
#include "bindings.hpp"
#include "group_shared_arrays.hpp"

namespace haste::python {
namespace {

// Outputs: written in place, so never converted (a converted copy would swallow the result).
template <typename T>
using Out = nb::ndarray<T, nb::c_contig, nb::device::cpu>;

template <typename T>
void forward(const InArray<int32_t>& indices, const InArray<T>& weight, const InArray<T>& bias,
             const InArray<T>& h, Out<T> z) {
  check(h.ndim() == 2, "h must be a 2-D array [B, d], not {}-D", h.ndim());
  const GroupSharedView<T> layer{
      group_shared_shape(indices, weight, static_cast<int64_t>(h.shape(1))), span_of(indices),
      span_of(weight), span_of(bias)};
  nb::gil_scoped_release unlocked;
  group_shared_forward(layer, static_cast<int64_t>(h.shape(0)), span_of(h), span_of(z));
}

template <typename T>
void backward_weights(const InArray<int32_t>& indices, const InArray<T>& h, const InArray<T>& dz,
                      Out<T> dweight, Out<T> dbias) {
  check(h.ndim() == 2, "h must be a 2-D array [B, d], not {}-D", h.ndim());
  // The kernel reads only the shape and indices of the layer.
  const GroupSharedView<T> layer{
      group_shared_shape(indices, dweight, static_cast<int64_t>(h.shape(1))),
      span_of(indices),
      {},
      {}};
  nb::gil_scoped_release unlocked;
  group_shared_backward_weights(layer, static_cast<int64_t>(h.shape(0)), span_of(h), span_of(dz),
                                span_of(dweight), span_of(dbias));
}

template <typename T>
void backward_inputs(const InArray<int32_t>& indices, const InArray<T>& weight,
                     const InArray<T>& bias, const InArray<T>& dz, Out<T> dh) {
  check(dh.ndim() == 2, "dh must be a 2-D array [B, d], not {}-D", dh.ndim());
  const GroupSharedView<T> layer{
      group_shared_shape(indices, weight, static_cast<int64_t>(dh.shape(1))), span_of(indices),
      span_of(weight), span_of(bias)};
  const int64_t B = rows_of(dz, layer.shape.labels(), "dz");
  nb::gil_scoped_release unlocked;
  group_shared_backward_inputs(layer, B, span_of(dz), span_of(dh));
}

// The batch's targets as the library's CSR matrix (copied: a batch's targets are small).
CsrMatrix targets_of(const InArray<int64_t>& indptr, const InArray<int32_t>& columns,
                     const std::optional<InArray<float>>& values, int64_t cols) {
  CsrMatrix targets;
  targets.rows = static_cast<int64_t>(indptr.size()) - 1;
  targets.cols = cols;
  targets.indptr.assign(indptr.data(), indptr.data() + indptr.size());
  targets.indices.assign(columns.data(), columns.data() + columns.size());
  if (values) targets.values.assign(values->data(), values->data() + values->size());
  check(targets.rows >= 0 && targets.indptr.front() == 0 &&
            targets.indptr.back() == targets.nnz() &&
            (targets.values.empty() || targets.values.size() == targets.indices.size()),
        "targets: indptr [{}] must start at 0 and end at the {} column indices (and values)",
        indptr.size(), columns.size());
  return targets;
}

// BCE-with-logits of a block of tail logits z [B, L_tail] (include/haste/tail_loss.hpp):
// returns the loss and overwrites dz.
template <typename T>
double tail_loss(const InArray<T>& z, const InArray<int64_t>& indptr,
                 const InArray<int32_t>& columns, const std::optional<InArray<float>>& values,
                 int64_t first, int64_t count, Out<T> dz) {
  check(z.ndim() == 2, "z must be a 2-D array [B, L_tail], not {}-D", z.ndim());
  const int64_t B = static_cast<int64_t>(z.shape(0)), L_tail = static_cast<int64_t>(z.shape(1));
  const CsrMatrix targets = targets_of(indptr, columns, values, first + count);
  check(targets.rows == B, "targets have {} rows for a batch of {}", targets.rows, B);
  nb::gil_scoped_release unlocked;
  return bce_with_logits_tail<T>(B, L_tail, span_of(z), targets, {first, count}, span_of(dz));
}

// DST on a tail held in arrays (include/haste/dst.hpp rewire_tail): rewires `indices` and moves
// `weight` in place; returns (changed slots, source [G, k]).
nb::tuple rewire(Out<int32_t> indices, Out<float> weight, int64_t d,
                 const std::optional<InArray<float>>& h, const std::optional<InArray<float>>& dz,
                 const std::string& prune, const std::string& regrow, double fraction,
                 uint64_t seed) {
  const GroupSharedShape shape = group_shared_shape(indices, weight, d);
  TailBatch batch;
  if (h && dz) {
    batch.B = rows_of(*h, d, "h");
    batch.d_tail = d;
    batch.h = span_of(*h);
    batch.dz = span_of(*dz);
  }
  std::vector<int32_t> source(shape.G * shape.k);
  DstResult result;
  {
    nb::gil_scoped_release unlocked;
    result = rewire_tail(shape, span_of(indices), span_of(weight), batch, parse_dst_prune(prune),
                         parse_dst_regrow(regrow), fraction, seed, source);
  }
  return nb::make_tuple(
      result.changed_slots,
      to_numpy(std::move(source), {static_cast<size_t>(shape.G), static_cast<size_t>(shape.k)}));
}

void validate_indices(const InArray<int32_t>& indices, int64_t d) {
  check(indices.ndim() == 2, "indices must be a 2-D array [G, k], not {}-D", indices.ndim());
  GroupSharedShape shape{d, static_cast<int64_t>(indices.shape(0)), 1,
                         static_cast<int64_t>(indices.shape(1))};
  shape.validate();
  validate_group_indices(shape, span_of(indices));
}

template <typename T>
void bind_kernels(nb::module_& m) {
  m.def("gsff_forward", &forward<T>, nb::arg("indices"), nb::arg("weight"), nb::arg("bias"),
        nb::arg("h"), nb::arg("z").noconvert());
  m.def("gsff_backward_weights", &backward_weights<T>, nb::arg("indices"), nb::arg("h"),
        nb::arg("dz"), nb::arg("dweight").noconvert(), nb::arg("dbias").noconvert());
  m.def("gsff_backward_inputs", &backward_inputs<T>, nb::arg("indices"), nb::arg("weight"),
        nb::arg("bias"), nb::arg("dz"), nb::arg("dh").noconvert());
  m.def("gsff_tail_loss", &tail_loss<T>, nb::arg("z"), nb::arg("indptr"), nb::arg("columns"),
        nb::arg("values").none(), nb::arg("first"), nb::arg("count"), nb::arg("dz").noconvert());
}

}  // namespace

void bind_group_shared(nb::module_& m) {
  bind_kernels<float>(m);
  bind_kernels<double>(m);
  m.def("gsff_rewire", &rewire, nb::arg("indices").noconvert(), nb::arg("weight").noconvert(),
        nb::arg("d"), nb::arg("h").none(), nb::arg("dz").none(), nb::arg("prune"),
        nb::arg("regrow"), nb::arg("fraction"), nb::arg("seed"));
  m.def("gsff_validate_indices", &validate_indices, nb::arg("indices"), nb::arg("d"));
}

}  // namespace haste::python
