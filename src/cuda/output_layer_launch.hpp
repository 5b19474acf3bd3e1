// What the host side of the GPU output layer (output_layer_gpu.cpp) hands to its small kernels
// (output_layer_kernels.cu). Plain C++ for g++ and nvcc; the launchers return cudaError_t.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace haste::cuda {

// The head's logits z [B, H] bf16 row-major with row stride ld >= H (bias not yet added) and
// the batch's CSR targets in model label ids (labels >= H belong to the tail and are skipped).
// Rows from `rows` to B pad the batch to a multiple of 16: they get dz = 0 and no loss.
struct HeadLossArgs {
  int64_t B = 0, rows = 0, H = 0, ld = 0;
  __nv_bfloat16* z = nullptr;  // in: logits without bias; out: dz
  const float* bias = nullptr;
  const int64_t* indptr = nullptr;
  const int32_t* indices = nullptr;
  const float* values = nullptr;  // null: every target 1
  float* positive_dz = nullptr;   // [nnz] scratch: the positives' dz, computed before the sweep
  double* loss = nullptr;
  float inv_batch = 0;  // 1 / rows: the loss is a mean over the real rows
};

// The BCE loss and dz of the head in three launches: the positives' logits are read (their
// -y * z loss term, their exact dz kept aside), then every element becomes sigmoid(z) / B with
// the softplus loss term, then the positives' dz are written over it. Splitting this way keeps
// the big sweep a plain stream over z with no target lookups.
cudaError_t launch_head_loss(const HeadLossArgs& args, int blocks_per_row, cudaStream_t stream);

// out[i] += sum over s < slices of partials[s * n + i]: the split-K partial products of the
// head's dh, added in a fixed order.
cudaError_t launch_add_slices(float* out, const float* partials, int64_t n, int slices,
                              cudaStream_t stream);

// values[i] = uniform in [-scale, scale) from (seed, i), or 0 for i / row_width >= real_rows
// (padding slots).
cudaError_t launch_fill_uniform(__nv_bfloat16* values, int64_t n, int64_t row_width,
                                int64_t real_rows, float scale, uint64_t seed, cudaStream_t stream);

// scores [G, k] = the DST prune rule's slot scores of weights [G*g, k] (haste::dst_slot_scores:
// mean |W| over a group's labels with mean_abs, else the L2 norm), the same values as the host's.
cudaError_t launch_dst_slot_scores(const __nv_bfloat16* weights, int64_t G, int64_t g, int64_t k,
                                   bool mean_abs, double* scores, cudaStream_t stream);

// Row G of indices [G, k]: k distinct features of [0, d) drawn from (seed, G), sorted. d <= 1024.
cudaError_t launch_random_group_indices(int32_t* indices, int64_t G, int64_t d, int64_t k,
                                        uint64_t seed, cudaStream_t stream);

}  // namespace haste::cuda
