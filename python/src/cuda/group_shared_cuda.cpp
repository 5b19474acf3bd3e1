// The group-shared tail's CUDA kernels (include/haste/cuda/group_shared_cuda.hpp and
// group_shared_fused.hpp) for haste.torch, on device arrays that come in through DLPack
// (PyTorch's CUDA tensors). Compiled only when the CUDA backend is; cuda_none.cpp stands in
// otherwise. Every launch goes to the stream the caller passes (PyTorch's current stream, as an
// integer), on the current device, which the caller sets to the arrays' device. Layouts are the
// kernels' own: hT [d, B] bf16, dhT [d, B] fp32, z and dz [B, G*g] bf16, weights bf16, biases
// fp32.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <cstdint>
#include <haste/cuda/cuda_check.hpp>
#include <haste/cuda/group_shared_cuda.hpp>
#include <haste/cuda/group_shared_fused.hpp>
#include <haste/error.hpp>
#include <optional>
#include <string>

#include "../bindings.hpp"
#include "../group_shared_arrays.hpp"
#include "cuda/group_shared_launch.hpp"

// DLPack's bfloat16, so that nb::ndarray checks the dtype of bf16 tensors.
namespace nanobind::detail {
template <>
struct dtype_traits<__nv_bfloat16> {
  static constexpr dlpack::dtype value{static_cast<uint8_t>(dlpack::dtype_code::Bfloat), 16, 1};
  static constexpr auto name = const_name("bfloat16");
};
}  // namespace nanobind::detail

namespace haste::python {
namespace {

using cuda::bf16;

template <typename T>
using Device = nb::ndarray<T, nb::c_contig, nb::device::cuda>;

cudaStream_t stream_of(uintptr_t stream) { return reinterpret_cast<cudaStream_t>(stream); }

// The layer's device pointers; d and B from hT [d, B] (or dhT).
template <typename Weights>
cuda::GroupSharedDevice layer_of(const Device<const int32_t>& indices, const Weights& weights,
                                 const bf16* weight_data, const float* bias_data, int64_t d) {
  return {group_shared_shape(indices, weights, d), indices.data(), weight_data, bias_data};
}

template <typename Transposed>
int64_t width_of(const Transposed& hT) {
  check(hT.ndim() == 2, "hT must be a 2-D array [d, B], not {}-D", hT.ndim());
  return static_cast<int64_t>(hT.shape(0));
}

void forward(const Device<const int32_t>& indices, const Device<const bf16>& weight,
             const Device<const float>& bias, const Device<const bf16>& hT, Device<bf16> z,
             uintptr_t stream) {
  const auto layer = layer_of(indices, weight, weight.data(), bias.data(), width_of(hT));
  const auto B = static_cast<int64_t>(hT.shape(1));
  check(rows_of(z, layer.shape.labels(), "z") == B && bias.size() == z.shape(1),
        "z [{}, {}] and bias [{}] do not fit a batch of {} and {} labels", z.shape(0), z.shape(1),
        bias.size(), B, layer.shape.labels());
  cuda::group_shared_forward(layer, B, hT.data(), z.data(), stream_of(stream));
}

void backward_weights(const Device<const int32_t>& indices, const Device<const bf16>& hT,
                      const Device<const bf16>& dz, Device<bf16> dweight, Device<float> dbias,
                      uintptr_t stream) {
  const auto layer = layer_of(indices, dweight, nullptr, nullptr, width_of(hT));
  const auto B = static_cast<int64_t>(hT.shape(1));
  check(rows_of(dz, layer.shape.labels(), "dz") == B &&
            dbias.size() == static_cast<size_t>(layer.shape.labels()),
        "dz [{}, {}] and dbias [{}] do not fit a batch of {} and {} labels", dz.shape(0),
        dz.shape(1), dbias.size(), B, layer.shape.labels());
  cuda::group_shared_backward_weights(layer, B, hT.data(), dz.data(), dweight.data(), dbias.data(),
                                      stream_of(stream));
}

void backward_inputs(const Device<const int32_t>& indices, const Device<const bf16>& weight,
                     const Device<const bf16>& dz, Device<float> dhT, uintptr_t stream) {
  const auto layer = layer_of(indices, weight, weight.data(), nullptr, width_of(dhT));
  const auto B = static_cast<int64_t>(dhT.shape(1));
  check(rows_of(dz, layer.shape.labels(), "dz") == B, "dz has {} rows for a batch of {}",
        dz.shape(0), B);
  cuda::group_shared_backward_inputs(layer, B, dz.data(), dhT.data(), stream_of(stream));
}

// Forward + BCE-with-logits over the batch's CSR targets + all gradients, without logits in
// memory: adds the loss to loss[0] (fp64), overwrites dweight and dbias, accumulates into dhT.
void fused_train(const Device<const int32_t>& indices, const Device<const bf16>& weight,
                 const Device<const float>& bias, const Device<const bf16>& hT,
                 const Device<const int64_t>& indptr, const Device<const int32_t>& columns,
                 const std::optional<Device<const float>>& values, int64_t first, int64_t count,
                 Device<bf16> dweight, Device<float> dbias, Device<float> dhT, Device<double> loss,
                 uintptr_t stream) {
  const auto layer = layer_of(indices, weight, weight.data(), bias.data(), width_of(hT));
  const auto B = static_cast<int64_t>(hT.shape(1));
  check(
      indptr.size() == static_cast<size_t>(B + 1) && (!values || values->size() == columns.size()),
      "targets: indptr [{}] for a batch of {}, {} columns, {} values", indptr.size(), B,
      columns.size(), values ? values->size() : 0);
  check(width_of(dhT) == layer.shape.d && static_cast<int64_t>(dhT.shape(1)) == B &&
            dweight.size() == weight.size() && dbias.size() == bias.size() && loss.size() == 1,
        "fused gradients: dhT [{}, {}], dweight [{}], dbias [{}], loss [{}] do not fit the layer",
        dhT.shape(0), dhT.shape(1), dweight.size(), dbias.size(), loss.size());
  const cuda::TailTargetsDevice targets{
      indptr.data(), columns.data(), values ? values->data() : nullptr, {first, count}};
  cuda::group_shared_fused_train(layer, B, B, hT.data(), targets, dweight.data(), dbias.data(),
                                 dhT.data(), loss.data(), stream_of(stream));
}

// Why the kernels cannot take this shape and batch on the current device (None: they can).
// `fused` adds the fused kernel's limits (g > 1, shared memory for d).
std::optional<std::string> unsupported(int64_t d, int64_t G, int64_t g, int64_t k, int64_t B,
                                       bool fused) {
  try {
    const GroupSharedShape shape{d, G, g, k};
    shape.validate();
    cuda::check_supported(shape, B);
    if (fused) {
      check(g > 1, "g = 1 is not fused");
      int device = 0, limit = 0;
      HASTE_CUDA_CHECK(cudaGetDevice(&device));
      HASTE_CUDA_CHECK(
          cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
      check(cuda::gsff_fused_train_shared_bytes(g, k, d) <= static_cast<size_t>(limit),
            "d = {} needs more shared memory than the {} KB of a block", d, limit / 1024);
    }
  } catch (const Error& error) {
    return std::string(error.what());
  }
  return std::nullopt;
}

}  // namespace

void bind_group_shared_cuda(nb::module_& m) {
  m.attr("HAS_CUDA") = true;
  m.def("gsff_cuda_forward", &forward, nb::arg("indices"), nb::arg("weight"), nb::arg("bias"),
        nb::arg("hT"), nb::arg("z").noconvert(), nb::arg("stream"));
  m.def("gsff_cuda_backward_weights", &backward_weights, nb::arg("indices"), nb::arg("hT"),
        nb::arg("dz"), nb::arg("dweight").noconvert(), nb::arg("dbias").noconvert(),
        nb::arg("stream"));
  m.def("gsff_cuda_backward_inputs", &backward_inputs, nb::arg("indices"), nb::arg("weight"),
        nb::arg("dz"), nb::arg("dhT").noconvert(), nb::arg("stream"));
  m.def("gsff_cuda_fused_train", &fused_train, nb::arg("indices"), nb::arg("weight"),
        nb::arg("bias"), nb::arg("hT"), nb::arg("indptr"), nb::arg("columns"),
        nb::arg("values").none(), nb::arg("first"), nb::arg("count"),
        nb::arg("dweight").noconvert(), nb::arg("dbias").noconvert(), nb::arg("dhT").noconvert(),
        nb::arg("loss").noconvert(), nb::arg("stream"));
  m.def("gsff_cuda_unsupported", &unsupported, nb::arg("d"), nb::arg("G"), nb::arg("g"),
        nb::arg("k"), nb::arg("B"), nb::arg("fused"));
}

}  // namespace haste::python
