// What the GPU encoder's host code (encoder_gpu.cpp) hands to its kernels (encoder_kernels.cu):
// one launcher per kernel, returning the launch's cudaError_t. Plain C++ so that both g++ and
// nvcc read it. Matrices are row-major; B is the padded batch, `rows` its real rows.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace haste::cuda {

// The CPU model's inverted dropout (see include/haste/cuda/encoder_gpu.hpp): element (b, j) is
// dropped iff draw j of Rng(hash_key(seed, b)) is below p; kept elements are scaled.
struct DropoutMask {
  bool on = false;
  uint64_t seed = 0;
  double p = 0.0;
  float keep_scale = 1.0f;  // float(1 / (1 - p)), as the CPU rounds it
};

// out[b, :] = act(bias + sum_i values[i] W[indices[i], :]) over row b's nonzeros; W is [F, n].
cudaError_t launch_embedding_bag(const int64_t* indptr, const int32_t* indices, const float* values,
                                 const float* weight, const float* bias, int64_t B, int64_t n,
                                 bool tanh, float* out, cudaStream_t stream);
// out = act(out + bias) over [B, n].
cudaError_t launch_bias_activation(const float* bias, int64_t B, int64_t n, bool tanh, float* out,
                                   cudaStream_t stream);
// h = a * mask (0 in padding rows), hT = bf16(h)^T.
cudaError_t launch_encoder_output(const float* a, int64_t rows, int64_t B, int64_t d,
                                  const DropoutMask& mask, float* h, __nv_bfloat16* hT,
                                  cudaStream_t stream);
// grad = (dh + dhT^T) * mask * act'(a) (0 in padding rows).
cudaError_t launch_output_gradient(const float* a, const float* dh, const float* dhT, int64_t rows,
                                   int64_t B, int64_t d, const DropoutMask& mask, bool tanh,
                                   float* grad, cudaStream_t stream);
// grad *= act'(a) over `count` elements (a: the activation's output).
cudaError_t launch_activation_backward(const float* a, int64_t count, bool tanh, float* grad,
                                       cudaStream_t stream);

// The gradient of an embedding bag's weight, row by row of the batch's distinct features.
struct SparseGradScratch {
  int64_t capacity = 0;       // nonzeros every array below holds
  int32_t* row_of = nullptr;  // batch row of each nonzero
  int32_t* iota = nullptr;    // 0, 1, ..., capacity - 1
  int32_t* sorted_features = nullptr;
  int32_t* sorted_entries = nullptr;  // nonzeros ordered by (feature, position)
  int32_t* starts = nullptr;          // first sorted position of each distinct feature
  int32_t* touched = nullptr;         // distinct features, sorted
  int32_t* touched_count = nullptr;   // one int
  void* temp = nullptr;               // CUB's scratch
  size_t temp_bytes = 0;
};
// CUB scratch bytes for `capacity` nonzeros.
size_t sparse_grad_temp_bytes(int64_t capacity);
cudaError_t launch_fill_iota(int32_t* out, int64_t count, cudaStream_t stream);
// Sorts the batch's nonzeros (features < F) by feature; fills starts and touched_count.
cudaError_t launch_touched_rows(const int64_t* indptr, const int32_t* indices, int64_t B,
                                int64_t nnz, int64_t F, const SparseGradScratch& s,
                                cudaStream_t stream);
// touched[u] = the u-th distinct feature and dweight[u, :] = the sum over its nonzeros of
// value * grad[row, :] (in batch row order, as on the CPU). grad is [B, n], dweight [capacity, n].
cudaError_t launch_sparse_weight_grad(const float* values, const float* grad, int64_t n,
                                      int64_t nnz, const SparseGradScratch& s, float* dweight,
                                      cudaStream_t stream);

}  // namespace haste::cuda
