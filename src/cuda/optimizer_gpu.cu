// AdamW / SGD-with-momentum update kernels and the tail slot remap (optimizer_gpu.hpp).
//
// The updates are elementwise and memory-bound: AdamW on bf16 weights with bf16 gradients moves
// 2 + 2 + 8 bytes in and 2 + 8 out per element, so the floor is those bytes over the HBM
// bandwidth (the dense 670K x 768 head: 11 GB, ~3.5 ms on an H100). One thread per element,
// grid-stride, consecutive threads on consecutive elements (coalesced); the arithmetic is the
// CPU's (src/model/optimizer.cpp) in fp32 (optimizer_element.cuh), so fp32 parameters match it
// to a few ulp.
#include "cuda/optimizer_element.cuh"

namespace haste::cuda {
namespace {

// Element i_value of the parameter and its state, from gradient element i_grad.
template <typename T, typename Grad>
__device__ inline void update_element(const UpdateScalars& s, T* value, const Grad* grad,
                                      OptimizerStateDevice state, int64_t i_value, int64_t i_grad,
                                      uint64_t key) {
  const bool adam = s.kind == OptimizerKind::adamw;
  float w = to_float(value[i_value]), m = state.first[i_value];
  float v = adam ? state.second[i_value] : 0.f;
  update_value(s, to_float(grad[i_grad]), w, m, v);
  state.first[i_value] = m;
  if (adam) state.second[i_value] = v;
  store_rounded(value + i_value, w, key, i_value);
}

// kPack consecutive values as one aligned load or store (16 or 32 bytes: LDG.128 / STG.128).
template <typename T>
struct alignas(sizeof(T) * kPack) Pack {
  T x[kPack];
};

// Dense update, kPack elements per thread and step with vector loads and stores; the caller
// sends every pointer 16-byte aligned and n a multiple of kPack (the rest goes element-wise).
template <typename T, typename Grad>
__global__ void dense_update_kernel(UpdateScalars s, T* value, const Grad* grad,
                                    OptimizerStateDevice state, int64_t packs, uint64_t key) {
  const bool adam = s.kind == OptimizerKind::adamw;
  auto* values = reinterpret_cast<Pack<T>*>(value);
  const auto* grads = reinterpret_cast<const Pack<Grad>*>(grad);
  auto* firsts = reinterpret_cast<Pack<float>*>(state.first);
  auto* seconds = reinterpret_cast<Pack<float>*>(state.second);
  for (int64_t p = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; p < packs;
       p += int64_t{gridDim.x} * blockDim.x) {
    Pack<T> w = values[p];
    const Pack<Grad> g = grads[p];
    Pack<float> m = firsts[p], v{};
    if (adam) v = seconds[p];
    Pack<T> out;
#pragma unroll
    for (int j = 0; j < kPack; ++j) {
      float wj = to_float(w.x[j]);
      update_value(s, to_float(g.x[j]), wj, m.x[j], v.x[j]);
      store_rounded(&out.x[j], wj, key, p * kPack + j);
    }
    values[p] = out;
    firsts[p] = m;
    if (adam) seconds[p] = v;
  }
}

template <typename T, typename Grad>
__global__ void dense_tail_kernel(UpdateScalars s, T* value, const Grad* grad,
                                  OptimizerStateDevice state, int64_t begin, int64_t n,
                                  uint64_t key) {
  const int64_t i = begin + threadIdx.x;
  if (i < n) update_element(s, value, grad, state, i, i, key);
}

template <typename T, typename Grad>
__global__ void row_update_kernel(UpdateScalars s, T* value, const Grad* grad,
                                  OptimizerStateDevice state, int64_t width, const int32_t* rows,
                                  const int32_t* row_count, int64_t max_rows, uint64_t key) {
  const int64_t count = *row_count;
  const int64_t n = (count < max_rows ? count : max_rows) * width;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t u = i / width;
    update_element(s, value, grad, state, int64_t{rows[u]} * width + (i - u * width), i, key);
  }
}

__global__ void scale_kernel(float* values, int64_t n, float factor) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    values[i] *= factor;
}

// One block per group: the group's [g, k] block goes through shared memory, so the permutation
// can be applied in place.
template <typename T>
__global__ void remap_slots_kernel(int64_t g, int64_t k, const int32_t* source, T* values) {
  extern __shared__ __align__(16) uint8_t shared[];
  T* old = reinterpret_cast<T*>(shared);
  T* block = values + blockIdx.x * g * k;
  const int32_t* from = source + blockIdx.x * k;
  for (int64_t i = threadIdx.x; i < g * k; i += blockDim.x) old[i] = block[i];
  __syncthreads();
  for (int64_t i = threadIdx.x; i < g * k; i += blockDim.x) {
    const int32_t j = from[i % k];
    block[i] = j >= 0 ? old[i - i % k + j] : T(0.0f);
  }
}

}  // namespace

template <typename T, typename Grad>
cudaError_t launch_dense_update(const UpdateScalars& s, T* value, const Grad* grad,
                                OptimizerStateDevice state, int64_t n, uint64_t key,
                                unsigned blocks, cudaStream_t stream) {
  const int64_t packs = n / kPack;
  if (packs > 0) {
    dense_update_kernel<<<blocks, kOptimizerThreads, 0, stream>>>(s, value, grad, state, packs,
                                                                  key);
  }
  if (packs * kPack < n) {
    dense_tail_kernel<<<1, kPack, 0, stream>>>(s, value, grad, state, packs * kPack, n, key);
  }
  return cudaGetLastError();
}

template <typename T, typename Grad>
cudaError_t launch_row_update(const UpdateScalars& s, T* value, const Grad* grad,
                              OptimizerStateDevice state, int64_t width, const int32_t* rows,
                              const int32_t* row_count, int64_t max_rows, uint64_t key,
                              unsigned blocks, cudaStream_t stream) {
  row_update_kernel<<<blocks, kOptimizerThreads, 0, stream>>>(s, value, grad, state, width, rows,
                                                              row_count, max_rows, key);
  return cudaGetLastError();
}

cudaError_t launch_scale(float* values, int64_t n, float factor, unsigned blocks,
                         cudaStream_t stream) {
  if (n > 0) scale_kernel<<<blocks, kOptimizerThreads, 0, stream>>>(values, n, factor);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_remap_slots(const GroupSharedShape& shape, const int32_t* source, T* values,
                               cudaStream_t stream) {
  const size_t bytes = static_cast<size_t>(shape.g * shape.k) * sizeof(T);
  remap_slots_kernel<T><<<static_cast<unsigned>(shape.G), kOptimizerThreads, bytes, stream>>>(
      shape.g, shape.k, source, values);
  return cudaGetLastError();
}

#define HASTE_INSTANTIATE_UPDATE(T, Grad)                                                    \
  template cudaError_t launch_dense_update<T, Grad>(const UpdateScalars&, T*, const Grad*,   \
                                                    OptimizerStateDevice, int64_t, uint64_t, \
                                                    unsigned, cudaStream_t);                 \
  template cudaError_t launch_row_update<T, Grad>(                                           \
      const UpdateScalars&, T*, const Grad*, OptimizerStateDevice, int64_t, const int32_t*,  \
      const int32_t*, int64_t, uint64_t, unsigned, cudaStream_t);
HASTE_INSTANTIATE_UPDATE(float, float)
HASTE_INSTANTIATE_UPDATE(bf16, bf16)
HASTE_INSTANTIATE_UPDATE(bf16, float)
#undef HASTE_INSTANTIATE_UPDATE
template cudaError_t launch_remap_slots<float>(const GroupSharedShape&, const int32_t*, float*,
                                               cudaStream_t);
template cudaError_t launch_remap_slots<bf16>(const GroupSharedShape&, const int32_t*, bf16*,
                                              cudaStream_t);

}  // namespace haste::cuda
