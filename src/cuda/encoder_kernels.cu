// Kernels of the GPU encoder (see include/haste/cuda/encoder_gpu.hpp and encoder_launch.hpp).
// Everything here is memory-bound and small next to the output layer:
// - embedding bag: one block per (batch row, 128-column slice), 4 warps sharing the row's
//   nonzeros, reads the rows of W_0 (16-byte loads, several in flight); floor = batch nonzeros x
//   n x 4 bytes (v1, one 2-warp block per 256 columns, was 1.5-1.8x slower than cuSPARSE at
//   d = 256: too few loads in flight).
// - output / output-gradient: 32 x 32 tiles through shared memory, so that both the row-major
//   [B, d] and the transposed [d, B] side are coalesced.
// - sparse weight gradient: the batch's (feature, nonzero) pairs are sorted by feature (CUB
//   radix sort, stable, so each feature's nonzeros stay in batch-row order as on the CPU), the
//   starts of the runs of equal features selected (CUB select), and each distinct feature's
//   gradient row is summed by one block slice, without atomics: the result is deterministic.
#include <thrust/iterator/counting_iterator.h>

#include <algorithm>
#include <cub/cub.cuh>

#include "cuda/encoder_launch.hpp"
#include "data/random.hpp"

namespace haste::cuda {
namespace {

constexpr int kWarpSize = 32;
constexpr int kBagWarps = 4;       // warps sharing one row's nonzeros (32 x 4 columns per block)
constexpr int kBagChunk = 256;     // nonzeros staged in shared memory at a time
constexpr int kTile = 32;          // transposing tiles
constexpr int kTileRows = 8;       // threads per tile column
constexpr int kGradThreads = 64;   // sparse weight gradient: 256 columns per block
constexpr int kGradBlocks = 2048;  // grid-stride over the distinct features (count on device)

// Draw j of Rng(hash_key(seed, b)) (src/data/random.hpp: SplitMix64 adds the golden gamma
// per draw), compared with p in double as on the CPU.
__device__ inline float mask_value(const DropoutMask& mask, int64_t b, int64_t j) {
  if (!mask.on) return 1.0f;
  constexpr uint64_t kGamma = 0x9e3779b97f4a7c15ULL;
  const uint64_t row_seed = hash_key(mask.seed, static_cast<uint64_t>(b));
  const uint64_t draw = mix64(row_seed + static_cast<uint64_t>(j + 1) * kGamma);
  const double uniform = static_cast<double>(draw >> 11) * 0x1.0p-53;
  return uniform < mask.p ? 0.0f : mask.keep_scale;
}

__device__ inline float activate(float x, bool tanh) { return tanh ? tanhf(x) : fmaxf(x, 0.0f); }
// grad * act'(pre-activation), written with the activation's output a (as on the CPU).
__device__ inline float activation_grad(float grad, float a, bool tanh) {
  return tanh ? grad * (1.0f - a * a) : (a > 0 ? grad : 0.0f);
}

template <int V>
__device__ inline void load(const float* p, float (&x)[V]) {
  if constexpr (V == 4) {
    const float4 v = __ldg(reinterpret_cast<const float4*>(p));
    x[0] = v.x, x[1] = v.y, x[2] = v.z, x[3] = v.w;
  } else {
    x[0] = __ldg(p);
  }
}
template <int V>
__device__ inline void store(float* p, const float (&x)[V]) {
  if constexpr (V == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(x[0], x[1], x[2], x[3]);
  } else {
    p[0] = x[0];
  }
}

// One block per (row b, slice of 32 * V columns). The row's nonzeros go through shared memory;
// warp w sums nonzeros w, w + kBagWarps, ... of them (several warps per row keep enough loads in
// flight for small d), then the warps' partial sums are added in a fixed order.
template <int V>
__global__ void embedding_bag_kernel(const int64_t* __restrict__ indptr,
                                     const int32_t* __restrict__ indices,
                                     const float* __restrict__ values,
                                     const float* __restrict__ weight,
                                     const float* __restrict__ bias, int64_t n, bool tanh,
                                     float* __restrict__ out) {
  __shared__ int32_t s_index[kBagChunk];
  __shared__ float s_value[kBagChunk];
  __shared__ float s_partial[kBagWarps][kWarpSize * V];
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int64_t b = blockIdx.x;
  const int64_t col = (static_cast<int64_t>(blockIdx.y) * kWarpSize + lane) * V;
  const bool active = col < n;
  float acc[V] = {};
  const int64_t begin = indptr[b], end = indptr[b + 1];
  for (int64_t chunk = begin; chunk < end; chunk += kBagChunk) {
    const int m = static_cast<int>(end - chunk < kBagChunk ? end - chunk : kBagChunk);
    __syncthreads();
    for (int i = threadIdx.x; i < m; i += kBagWarps * kWarpSize) {
      s_index[i] = indices[chunk + i];
      s_value[i] = values[chunk + i];
    }
    __syncthreads();
    if (!active) continue;
#pragma unroll 4
    for (int i = warp; i < m; i += kBagWarps) {
      float w[V];
      load<V>(weight + static_cast<int64_t>(s_index[i]) * n + col, w);
#pragma unroll
      for (int v = 0; v < V; ++v) acc[v] = fmaf(s_value[i], w[v], acc[v]);
    }
  }
#pragma unroll
  for (int v = 0; v < V; ++v) s_partial[warp][lane * V + v] = acc[v];
  __syncthreads();
  if (warp != 0 || !active) return;
  float sum[V];
  load<V>(bias + col, sum);
#pragma unroll
  for (int w = 0; w < kBagWarps; ++w) {
#pragma unroll
    for (int v = 0; v < V; ++v) sum[v] += s_partial[w][lane * V + v];
  }
#pragma unroll
  for (int v = 0; v < V; ++v) sum[v] = activate(sum[v], tanh);
  store<V>(out + b * n + col, sum);
}

__global__ void bias_activation_kernel(const float* __restrict__ bias, int64_t count, int64_t n,
                                       bool tanh, float* __restrict__ out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = activate(out[i] + bias[i % n], tanh);
  }
}

__global__ void activation_backward_kernel(const float* __restrict__ a, int64_t count, bool tanh,
                                           float* __restrict__ grad) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    grad[i] = activation_grad(grad[i], a[i], tanh);
  }
}

// Block (kTile, kTileRows) owns the tile of rows b0.. and columns j0.. of [B, d].
__global__ void encoder_output_kernel(const float* __restrict__ a, int64_t rows, int64_t B,
                                      int64_t d, DropoutMask mask, float* __restrict__ h,
                                      __nv_bfloat16* __restrict__ hT) {
  __shared__ float tile[kTile][kTile + 1];
  const int64_t b0 = int64_t{blockIdx.y} * kTile, j0 = int64_t{blockIdx.x} * kTile;
  for (int r = threadIdx.y; r < kTile; r += kTileRows) {
    const int64_t b = b0 + r, j = j0 + threadIdx.x;
    if (b < B && j < d) {
      const float value = b < rows ? a[b * d + j] * mask_value(mask, b, j) : 0.0f;
      h[b * d + j] = value;
      tile[r][threadIdx.x] = value;
    }
  }
  __syncthreads();
  for (int r = threadIdx.y; r < kTile; r += kTileRows) {
    const int64_t j = j0 + r, b = b0 + threadIdx.x;
    if (j < d && b < B) hT[j * B + b] = __float2bfloat16(tile[threadIdx.x][r]);
  }
}

__global__ void output_gradient_kernel(const float* __restrict__ a, const float* __restrict__ dh,
                                       const float* __restrict__ dhT, int64_t rows, int64_t B,
                                       int64_t d, DropoutMask mask, bool tanh,
                                       float* __restrict__ grad) {
  __shared__ float tile[kTile][kTile + 1];
  const int64_t b0 = int64_t{blockIdx.y} * kTile, j0 = int64_t{blockIdx.x} * kTile;
  for (int r = threadIdx.y; r < kTile; r += kTileRows) {
    const int64_t j = j0 + r, b = b0 + threadIdx.x;
    tile[r][threadIdx.x] = (j < d && b < B) ? dhT[j * B + b] : 0.0f;
  }
  __syncthreads();
  for (int r = threadIdx.y; r < kTile; r += kTileRows) {
    const int64_t b = b0 + r, j = j0 + threadIdx.x;
    if (b >= B || j >= d) continue;
    float g = 0.0f;
    if (b < rows) {
      g = (dh[b * d + j] + tile[threadIdx.x][r]) * mask_value(mask, b, j);
      g = activation_grad(g, a[b * d + j], tanh);
    }
    grad[b * d + j] = g;
  }
}

__global__ void iota_kernel(int32_t* out, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = static_cast<int32_t>(i);
  }
}

// One block per batch row.
__global__ void row_of_kernel(const int64_t* __restrict__ indptr, int32_t* __restrict__ row_of) {
  const int64_t begin = indptr[blockIdx.x], end = indptr[blockIdx.x + 1];
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) row_of[i] = blockIdx.x;
}

// Position i of the sorted features starts a run of equal features.
struct RunStart {
  const int32_t* sorted_features;
  __device__ bool operator()(int32_t i) const {
    return i == 0 || sorted_features[i] != sorted_features[i - 1];
  }
};

// Block (u, slice) sums distinct feature u's nonzeros (sorted positions starts[u] ..
// starts[u + 1]) for kGradThreads * V columns, and names the feature in touched[u].
template <int V>
__global__ void sparse_weight_grad_kernel(
    const float* __restrict__ values, const float* __restrict__ grad, int64_t n, int32_t nnz,
    const int32_t* __restrict__ starts, const int32_t* __restrict__ touched_count,
    const int32_t* __restrict__ sorted_features, const int32_t* __restrict__ sorted_entries,
    const int32_t* __restrict__ row_of, int32_t* __restrict__ touched,
    float* __restrict__ dweight) {
  const int64_t col = (static_cast<int64_t>(blockIdx.y) * kGradThreads + threadIdx.x) * V;
  if (col >= n) return;
  const int32_t distinct = *touched_count;
  for (int32_t u = blockIdx.x; u < distinct; u += gridDim.x) {
    const int32_t first = starts[u], last = u + 1 < distinct ? starts[u + 1] : nnz;
    if (col == 0) touched[u] = sorted_features[first];
    float acc[V] = {};
    for (int32_t i = first; i < last; ++i) {
      const int32_t e = sorted_entries[i];
      float g[V];
      load<V>(grad + static_cast<int64_t>(row_of[e]) * n + col, g);
      const float value = values[e];
#pragma unroll
      for (int v = 0; v < V; ++v) acc[v] = fmaf(value, g[v], acc[v]);
    }
    store<V>(dweight + static_cast<int64_t>(u) * n + col, acc);
  }
}

unsigned grid_for(int64_t count, int threads) {
  return static_cast<unsigned>(std::min<int64_t>((count + threads - 1) / threads, 65535 * 8));
}

int bits_for(int64_t F) {
  int bits = 1;
  while ((int64_t{1} << bits) < F) ++bits;
  return bits;
}

}  // namespace

cudaError_t launch_embedding_bag(const int64_t* indptr, const int32_t* indices, const float* values,
                                 const float* weight, const float* bias, int64_t B, int64_t n,
                                 bool tanh, float* out, cudaStream_t stream) {
  const int V = n % 4 == 0 ? 4 : 1;
  const dim3 grid(static_cast<unsigned>(B),
                  static_cast<unsigned>((n / V + kWarpSize - 1) / kWarpSize));
  const auto kernel = V == 4 ? embedding_bag_kernel<4> : embedding_bag_kernel<1>;
  kernel<<<grid, kBagWarps * kWarpSize, 0, stream>>>(indptr, indices, values, weight, bias, n, tanh,
                                                     out);
  return cudaGetLastError();
}

cudaError_t launch_bias_activation(const float* bias, int64_t B, int64_t n, bool tanh, float* out,
                                   cudaStream_t stream) {
  bias_activation_kernel<<<grid_for(B * n, 256), 256, 0, stream>>>(bias, B * n, n, tanh, out);
  return cudaGetLastError();
}

cudaError_t launch_encoder_output(const float* a, int64_t rows, int64_t B, int64_t d,
                                  const DropoutMask& mask, float* h, __nv_bfloat16* hT,
                                  cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((d + kTile - 1) / kTile),
                  static_cast<unsigned>((B + kTile - 1) / kTile));
  encoder_output_kernel<<<grid, dim3(kTile, kTileRows), 0, stream>>>(a, rows, B, d, mask, h, hT);
  return cudaGetLastError();
}

cudaError_t launch_output_gradient(const float* a, const float* dh, const float* dhT, int64_t rows,
                                   int64_t B, int64_t d, const DropoutMask& mask, bool tanh,
                                   float* grad, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((d + kTile - 1) / kTile),
                  static_cast<unsigned>((B + kTile - 1) / kTile));
  output_gradient_kernel<<<grid, dim3(kTile, kTileRows), 0, stream>>>(a, dh, dhT, rows, B, d, mask,
                                                                      tanh, grad);
  return cudaGetLastError();
}

cudaError_t launch_activation_backward(const float* a, int64_t count, bool tanh, float* grad,
                                       cudaStream_t stream) {
  activation_backward_kernel<<<grid_for(count, 256), 256, 0, stream>>>(a, count, tanh, grad);
  return cudaGetLastError();
}

size_t sparse_grad_temp_bytes(int64_t capacity) {
  const int n = static_cast<int>(capacity);
  size_t sort = 0, select = 0;
  cub::DeviceRadixSort::SortPairs(
      nullptr, sort, static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), n);
  cub::DeviceSelect::If(nullptr, select, thrust::counting_iterator<int32_t>(0),
                        static_cast<int32_t*>(nullptr), static_cast<int32_t*>(nullptr), n,
                        RunStart{nullptr});
  return std::max(sort, select);
}

cudaError_t launch_fill_iota(int32_t* out, int64_t count, cudaStream_t stream) {
  iota_kernel<<<grid_for(count, 256), 256, 0, stream>>>(out, count);
  return cudaGetLastError();
}

cudaError_t launch_touched_rows(const int64_t* indptr, const int32_t* indices, int64_t B,
                                int64_t nnz, int64_t F, const SparseGradScratch& s,
                                cudaStream_t stream) {
  const int n = static_cast<int>(nnz);
  row_of_kernel<<<static_cast<unsigned>(B), 128, 0, stream>>>(indptr, s.row_of);
  cudaError_t status = cudaGetLastError();
  size_t temp_bytes = s.temp_bytes;
  if (status == cudaSuccess) {
    status = cub::DeviceRadixSort::SortPairs(s.temp, temp_bytes, indices, s.sorted_features, s.iota,
                                             s.sorted_entries, n, 0, bits_for(F), stream);
  }
  temp_bytes = s.temp_bytes;
  if (status == cudaSuccess) {
    status =
        cub::DeviceSelect::If(s.temp, temp_bytes, thrust::counting_iterator<int32_t>(0), s.starts,
                              s.touched_count, n, RunStart{s.sorted_features}, stream);
  }
  return status;
}

cudaError_t launch_sparse_weight_grad(const float* values, const float* grad, int64_t n,
                                      int64_t nnz, const SparseGradScratch& s, float* dweight,
                                      cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(nnz, kGradBlocks));
  const int V = n % 4 == 0 ? 4 : 1;
  const dim3 grid(blocks, static_cast<unsigned>((n / V + kGradThreads - 1) / kGradThreads));
  const auto kernel = V == 4 ? sparse_weight_grad_kernel<4> : sparse_weight_grad_kernel<1>;
  kernel<<<grid, kGradThreads, 0, stream>>>(values, grad, n, static_cast<int32_t>(nnz), s.starts,
                                            s.touched_count, s.sorted_features, s.sorted_entries,
                                            s.row_of, s.touched, dweight);
  return cudaGetLastError();
}

}  // namespace haste::cuda
