// Small kernels of the GPU output layer (output_layer_launch.hpp): the head's BCE loss with
// sparse targets, and random initialisation for benchmarks.
//
// The head loss sweep reads and writes z [B, H] once (bf16): at the dense 670K-label layer and
// B = 256 that is 0.7 GB, ~0.25 ms on an H100; one block row per batch row (blockIdx.y), blocks
// along the row, so the bias is read coalesced and each block adds its partial loss once.
#include <cuda_bf16.h>

#include <algorithm>

#include "cpu/sigmoid.hpp"
#include "cuda/optimizer_launch.hpp"
#include "cuda/output_layer_launch.hpp"

namespace haste::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpSize = 32;

// Adds the block's sum of `value` to *out (one atomic per block).
__device__ void block_add(double value, double* out) {
  __shared__ double partial[kThreads / kWarpSize];
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value += __shfl_down_sync(0xffffffffu, value, offset);
  }
  if (threadIdx.x % kWarpSize == 0) partial[threadIdx.x / kWarpSize] = value;
  __syncthreads();
  if (threadIdx.x == 0) {
    double sum = 0;
    for (int w = 0; w < blockDim.x / kWarpSize; ++w) sum += partial[w];
    atomicAdd(out, sum);
  }
}

// Row b's head positives: loss term -y * x and dz = (sigmoid(x) - y) / rows, kept aside.
__global__ void head_positives_kernel(HeadLossArgs a) {
  const int64_t b = blockIdx.x;
  double loss = 0;
  for (int64_t p = a.indptr[b] + threadIdx.x; p < a.indptr[b + 1]; p += blockDim.x) {
    const int32_t l = a.indices[p];
    if (l >= a.H) continue;
    const float x = __bfloat162float(a.z[b * a.ld + l]) + a.bias[l];
    const float y = a.values ? a.values[p] : 1.f;
    loss -= static_cast<double>(y) * x;
    a.positive_dz[p] = sigmoid_minus(x, y) * a.inv_batch;
  }
  block_add(loss * a.inv_batch, a.loss);
}

// Every element: the target-free part of the loss, max(x, 0) + log1p(exp(-|x|)), and
// dz = sigmoid(x) / rows; a padding row's dz is 0.
__global__ void head_sweep_kernel(HeadLossArgs a) {
  const int64_t b = blockIdx.y;
  const bool padding = b >= a.rows;  // the same for the whole block
  __nv_bfloat16* row = a.z + b * a.ld;
  float loss = 0;
  for (int64_t l = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; l < a.H;
       l += int64_t{gridDim.x} * blockDim.x) {
    if (padding) {
      row[l] = __float2bfloat16(0.f);
      continue;
    }
    const float x = __bfloat162float(row[l]) + a.bias[l];
    loss += fmaxf(x, 0.f) + log1pf(expf(-fabsf(x)));
    row[l] = __float2bfloat16(sigmoid(x) * a.inv_batch);
  }
  block_add(static_cast<double>(loss) * a.inv_batch, a.loss);
}

__global__ void head_positives_write_kernel(HeadLossArgs a) {
  const int64_t b = blockIdx.x;
  for (int64_t p = a.indptr[b] + threadIdx.x; p < a.indptr[b + 1]; p += blockDim.x) {
    const int32_t l = a.indices[p];
    if (l < a.H) a.z[b * a.ld + l] = __float2bfloat16(a.positive_dz[p]);
  }
}

__global__ void add_slices_kernel(float* out, const float* partials, int64_t n, int slices) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    float sum = out[i];
    for (int s = 0; s < slices; ++s) sum += partials[s * n + i];
    out[i] = sum;
  }
}

__device__ inline float uniform01(uint64_t seed, uint64_t i) {
  return static_cast<float>(mix64(seed ^ mix64(i)) >> 40) * 0x1p-24f;
}

__global__ void fill_uniform_kernel(__nv_bfloat16* values, int64_t n, int64_t row_width,
                                    int64_t real_rows, float scale, uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float x = i / row_width < real_rows ? (2.f * uniform01(seed, i) - 1.f) * scale : 0.f;
    values[i] = __float2bfloat16(x);
  }
}

// One thread per group: Floyd's sampling into a bit set of d bits, read back in order (sorted).
__global__ void random_group_indices_kernel(int32_t* indices, int64_t G, int64_t d, int64_t k,
                                            uint64_t seed) {
  const int64_t group = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (group >= G) return;
  uint32_t taken[32] = {};
  uint64_t state = mix64(seed ^ mix64(static_cast<uint64_t>(group)));
  for (int64_t n = d - k; n < d; ++n) {
    state = mix64(state + 0x9e3779b97f4a7c15ull);
    auto pick = static_cast<int64_t>(state % static_cast<uint64_t>(n + 1));
    if (taken[pick / 32] >> (pick % 32) & 1u) pick = n;
    taken[pick / 32] |= 1u << (pick % 32);
  }
  int32_t* out = indices + group * k;
  for (int64_t f = 0; f < d; ++f) {
    if (taken[f / 32] >> (f % 32) & 1u) *out++ = static_cast<int32_t>(f);
  }
}

// One thread per slot (consecutive threads on consecutive slots of a label row: coalesced):
// haste::dst_slot_scores' sum over the group's labels in label order, in double (|w| and w^2
// of a bf16 weight are exact there, so the host's values come out bit for bit).
__global__ void dst_slot_scores_kernel(const __nv_bfloat16* weights, int64_t G, int64_t g,
                                       int64_t k, bool mean_abs, double* scores) {
  const int64_t slot = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (slot >= G * k) return;
  const int64_t group = slot / k, j = slot % k;
  double score = 0;
  for (int64_t l = group * g; l < (group + 1) * g; ++l) {
    const float w = __bfloat162float(weights[l * k + j]);
    score += mean_abs ? fabsf(w) : double{w} * w;
  }
  scores[slot] = mean_abs ? score / static_cast<double>(g) : sqrt(score);
}

unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 1 << 16));
}

}  // namespace

cudaError_t launch_head_loss(const HeadLossArgs& args, int blocks_per_row, cudaStream_t stream) {
  // Padding rows have no positives to read or write; the sweep zeroes their dz.
  const auto rows = static_cast<unsigned>(args.rows);
  if (rows > 0) head_positives_kernel<<<rows, 64, 0, stream>>>(args);
  head_sweep_kernel<<<dim3(static_cast<unsigned>(blocks_per_row), static_cast<unsigned>(args.B)),
                      kThreads, 0, stream>>>(args);
  if (rows > 0) head_positives_write_kernel<<<rows, 64, 0, stream>>>(args);
  return cudaGetLastError();
}

cudaError_t launch_add_slices(float* out, const float* partials, int64_t n, int slices,
                              cudaStream_t stream) {
  add_slices_kernel<<<blocks_for(n), kThreads, 0, stream>>>(out, partials, n, slices);
  return cudaGetLastError();
}

cudaError_t launch_fill_uniform(__nv_bfloat16* values, int64_t n, int64_t row_width,
                                int64_t real_rows, float scale, uint64_t seed,
                                cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  fill_uniform_kernel<<<blocks_for(n), kThreads, 0, stream>>>(values, n, row_width, real_rows,
                                                              scale, seed);
  return cudaGetLastError();
}

cudaError_t launch_dst_slot_scores(const __nv_bfloat16* weights, int64_t G, int64_t g, int64_t k,
                                   bool mean_abs, double* scores, cudaStream_t stream) {
  const int64_t slots = G * k;
  if (slots == 0) return cudaSuccess;
  dst_slot_scores_kernel<<<static_cast<unsigned>((slots + kThreads - 1) / kThreads), kThreads, 0,
                           stream>>>(weights, G, g, k, mean_abs, scores);
  return cudaGetLastError();
}

cudaError_t launch_random_group_indices(int32_t* indices, int64_t G, int64_t d, int64_t k,
                                        uint64_t seed, cudaStream_t stream) {
  if (G == 0) return cudaSuccess;
  random_group_indices_kernel<<<static_cast<unsigned>((G + 127) / 128), 128, 0, stream>>>(
      indices, G, d, k, seed);
  return cudaGetLastError();
}

}  // namespace haste::cuda
