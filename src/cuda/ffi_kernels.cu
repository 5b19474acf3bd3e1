// Standard fixed fan-in (g = 1) on CUDA cores: the in-house baseline the group-shared kernels
// are measured against. Every label has its own k features, so nothing is shared between
// labels and the tensor cores have no tile to work on; what these kernels still do well:
// - the batch tile's slice of hT sits in shared memory, so gathers never touch global memory;
// - forward and backward-to-inputs run one warp per label with lanes over batch rows, so each
//   gathered row is read by a whole warp at once (one conflict-free 128-byte access);
// - backward-to-inputs accumulates dhT[:, tile] in shared memory (atomics there, one flush);
// - backward-to-weights runs lanes over slots and keeps 16 labels' dW in registers across all
//   batch tiles.
// Labels are split into blocks of 32 (forward, inputs) or 128 (weights) over thread blocks.
#include "cuda/gsff_tiling.cuh"

namespace haste::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * kWarpSize;
constexpr int kLabelBlock = 32;  // labels a warp walks through before writing (fwd, inputs)
using HTile = SwizzledTile<8>;   // [d][64] slice of hT

// Issues the copy of hT[:, b0 : b0 + rows) into `tile` and waits for it.
__device__ void load_h_slice(const HTile& tile, const GroupSharedArgs& a, int64_t b0, int rows) {
  load_rows_async(tile, static_cast<int>(a.d), rows / 8,
                  [&](int feature) { return a.hT + feature * a.B + b0; });
  commit_async_copies();
  wait_async_copies<0>();
  __syncthreads();
}

// Lane `lane` holds slots lane, lane + 32, ... of label `label`: its indices and weights.
template <int kK>
struct LabelSlots {
  int32_t feature[kK / kWarpSize];
  float weight[kK / kWarpSize];

  __device__ LabelSlots(const GroupSharedArgs& a, int64_t label, int lane) {
#pragma unroll
    for (int s = 0; s < kK / kWarpSize; ++s) {
      feature[s] = __ldg(a.indices + label * kK + s * kWarpSize + lane);
      weight[s] = a.weights ? __bfloat162float(a.weights[label * kK + s * kWarpSize + lane]) : 0.f;
    }
  }
};

template <int kK>
__global__ void __launch_bounds__(kThreads)
    ffi_forward_kernel(GroupSharedArgs a, int batch_tiles, int64_t label_blocks) {
  constexpr int kBatchTile = 64;
  extern __shared__ __align__(128) uint8_t shared[];
  const HTile h_tile{reinterpret_cast<bf16*>(shared)};
  bf16* out = reinterpret_cast<bf16*>(shared + a.d * kBatchTile * 2);  // [warps][64][32]

  const BatchTileWork work = batch_tile_work(batch_tiles, label_blocks);
  const int64_t b0 = work.batch_tile * kBatchTile;
  const int rows = a.B - b0 < kBatchTile ? static_cast<int>(a.B - b0) : kBatchTile;
  load_h_slice(h_tile, a, b0, rows);

  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  bf16* warp_out = out + warp * kBatchTile * kLabelBlock;
  const int row = 2 * lane;  // this lane's batch rows: row, row + 1
  for (int64_t block = work.stage_begin + warp; block < work.stage_end; block += kWarps) {
    const int64_t l0 = block * kLabelBlock;
    const int labels = a.G - l0 < kLabelBlock ? static_cast<int>(a.G - l0) : kLabelBlock;
    for (int i = 0; i < labels; ++i) {
      const LabelSlots<kK> slots(a, l0 + i, lane);
      float sum0 = a.bias[l0 + i], sum1 = sum0;
      if (row < rows) {
#pragma unroll
        for (int j = 0; j < kK; ++j) {
          const int feature = __shfl_sync(0xffffffffu, slots.feature[j / kWarpSize], j % kWarpSize);
          const float weight = __shfl_sync(0xffffffffu, slots.weight[j / kWarpSize], j % kWarpSize);
          const float2 h = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(
              &h_tile.chunk_pointer(feature, row / 8)[row % 8]));
          sum0 += weight * h.x;
          sum1 += weight * h.y;
        }
      } else {
#pragma unroll
        for (int j = 0; j < kK; ++j) {  // keep the warp's shuffles converged
          __shfl_sync(0xffffffffu, slots.feature[j / kWarpSize], j % kWarpSize);
          __shfl_sync(0xffffffffu, slots.weight[j / kWarpSize], j % kWarpSize);
        }
      }
      warp_out[row * kLabelBlock + i] = __float2bfloat16_rn(sum0);
      warp_out[(row + 1) * kLabelBlock + i] = __float2bfloat16_rn(sum1);
    }
    __syncwarp();
    for (int r = 0; r < rows; ++r) {
      if (lane < labels) a.z[(b0 + r) * a.G + l0 + lane] = warp_out[r * kLabelBlock + lane];
    }
    __syncwarp();
  }
}

template <int kK>
__global__ void __launch_bounds__(kThreads)
    ffi_backward_inputs_kernel(GroupSharedArgs a, int batch_tiles, int64_t label_blocks) {
  constexpr int kBatchTile = 32;
  extern __shared__ __align__(128) uint8_t shared[];
  float* accumulator = reinterpret_cast<float*>(shared);  // [d][32]
  float* dz_block = accumulator + a.d * kBatchTile;       // [warps][32][32]
  const BatchTileWork work = batch_tile_work(batch_tiles, label_blocks);
  const int64_t b0 = work.batch_tile * kBatchTile;
  const int rows = a.B - b0 < kBatchTile ? static_cast<int>(a.B - b0) : kBatchTile;
  for (int i = threadIdx.x; i < a.d * kBatchTile; i += kThreads) accumulator[i] = 0.f;
  __syncthreads();

  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  float* warp_dz = dz_block + warp * kLabelBlock * kBatchTile;
  for (int64_t block = work.stage_begin + warp; block < work.stage_end; block += kWarps) {
    const int64_t l0 = block * kLabelBlock;
    const int labels = a.G - l0 < kLabelBlock ? static_cast<int>(a.G - l0) : kLabelBlock;
    for (int r = 0; r < rows; ++r) {  // coalesced over labels, stored [label][row]
      if (lane < labels) {
        warp_dz[lane * kBatchTile + r] = __bfloat162float(a.dz[(b0 + r) * a.G + l0 + lane]);
      }
    }
    __syncwarp();
    for (int i = 0; i < labels; ++i) {
      const LabelSlots<kK> slots(a, l0 + i, lane);
      const float dz = warp_dz[i * kBatchTile + lane];
#pragma unroll
      for (int j = 0; j < kK; ++j) {
        const int feature = __shfl_sync(0xffffffffu, slots.feature[j / kWarpSize], j % kWarpSize);
        const float weight = __shfl_sync(0xffffffffu, slots.weight[j / kWarpSize], j % kWarpSize);
        if (lane < rows) atomicAdd(accumulator + feature * kBatchTile + lane, weight * dz);
      }
    }
    __syncwarp();
  }
  __syncthreads();
  for (int i = threadIdx.x; i < a.d * rows; i += kThreads) {
    const int feature = i / rows, column = i % rows;
    atomicAdd(a.dhT + feature * a.B + b0 + column, accumulator[feature * kBatchTile + column]);
  }
}

template <int kK>
__global__ void __launch_bounds__(kThreads)
    ffi_backward_weights_kernel(GroupSharedArgs a, int batch_tiles, int64_t label_passes) {
  constexpr int kBatchTile = 64;
  constexpr int kLabelsPerWarp = 16;
  constexpr int kPassLabels = kWarps * kLabelsPerWarp;
  constexpr int kDzStride = kBatchTile + 8;  // padded rows: the transposing stores spread out
  constexpr int kSlotsPerLane = kK / kWarpSize;
  extern __shared__ __align__(128) uint8_t shared[];
  const HTile h_tile{reinterpret_cast<bf16*>(shared)};
  bf16* dz_t = reinterpret_cast<bf16*>(shared + a.d * kBatchTile * 2);  // [pass labels][72]

  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  for (int64_t pass = blockIdx.x; pass < label_passes; pass += gridDim.x) {
    const int64_t l0 = pass * kPassLabels;
    const int labels = a.G - l0 < kPassLabels ? static_cast<int>(a.G - l0) : kPassLabels;
    const int64_t warp_l0 = l0 + warp * kLabelsPerWarp;
    int32_t features[kLabelsPerWarp][kSlotsPerLane];
    float acc[kLabelsPerWarp][kSlotsPerLane] = {};
    float bias_sum = 0.f;
#pragma unroll
    for (int i = 0; i < kLabelsPerWarp; ++i) {
#pragma unroll
      for (int s = 0; s < kSlotsPerLane; ++s) {
        features[i][s] =
            warp_l0 + i < a.G ? __ldg(a.indices + (warp_l0 + i) * kK + s * kWarpSize + lane) : 0;
      }
    }
    for (int tile = 0; tile < batch_tiles; ++tile) {
      const int64_t b0 = static_cast<int64_t>(tile) * kBatchTile;
      const int rows = a.B - b0 < kBatchTile ? static_cast<int>(a.B - b0) : kBatchTile;
      __syncthreads();  // the previous tile's readers are done
      for (int i = threadIdx.x; i < kPassLabels * rows; i += kThreads) {
        const int r = i / kPassLabels, label = i % kPassLabels;
        dz_t[label * kDzStride + r] =
            label < labels ? a.dz[(b0 + r) * a.G + l0 + label] : __float2bfloat16_rn(0.f);
      }
      load_h_slice(h_tile, a, b0, rows);
      if (threadIdx.x < labels) {
        for (int r = 0; r < rows; ++r)
          bias_sum += __bfloat162float(dz_t[threadIdx.x * kDzStride + r]);
      }
      for (int c = 0; c < rows / 8; ++c) {
        float h[kSlotsPerLane][8];
#pragma unroll
        for (int i = 0; i < kLabelsPerWarp; ++i) {
          const uint4 dz_raw = *reinterpret_cast<const uint4*>(
              dz_t + (warp * kLabelsPerWarp + i) * kDzStride + c * 8);
          const __nv_bfloat162* dz2 = reinterpret_cast<const __nv_bfloat162*>(&dz_raw);
#pragma unroll
          for (int s = 0; s < kSlotsPerLane; ++s) {
            const uint4 h_raw =
                *reinterpret_cast<const uint4*>(h_tile.chunk_pointer(features[i][s], c));
            const __nv_bfloat162* h2 = reinterpret_cast<const __nv_bfloat162*>(&h_raw);
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const float2 hv = __bfloat1622float2(h2[e]), dv = __bfloat1622float2(dz2[e]);
              h[s][2 * e] = hv.x * dv.x;
              h[s][2 * e + 1] = hv.y * dv.y;
            }
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[i][s] += h[s][e];
          }
        }
      }
    }
#pragma unroll
    for (int i = 0; i < kLabelsPerWarp; ++i) {
      if (warp_l0 + i >= a.G) continue;
#pragma unroll
      for (int s = 0; s < kSlotsPerLane; ++s) {
        a.dweights[(warp_l0 + i) * kK + s * kWarpSize + lane] = __float2bfloat16_rn(acc[i][s]);
      }
    }
    if (threadIdx.x < labels) a.dbias[l0 + threadIdx.x] = bias_sum;
  }
}

template <typename Body>
cudaError_t dispatch_fan_in(int64_t k, Body&& body) {
  switch (k) {
    case 32:
      return body(std::integral_constant<int, 32>{});
    case 64:
      return body(std::integral_constant<int, 64>{});
    case 128:
      return body(std::integral_constant<int, 128>{});
    default:
      return cudaErrorInvalidValue;
  }
}

int64_t label_blocks(const GroupSharedArgs& args) {
  return (args.G + kLabelBlock - 1) / kLabelBlock;
}

}  // namespace

cudaError_t launch_ffi_forward(const GroupSharedArgs& args, cudaStream_t stream) {
  return dispatch_fan_in(args.k, [&](auto k_constant) {
    const size_t shared_bytes = args.d * 64 * 2 + kWarps * 64 * kLabelBlock * 2;
    return launch_batch_tiled(ffi_forward_kernel<decltype(k_constant)::value>, args, kThreads, 64,
                              label_blocks(args), shared_bytes, stream);
  });
}

cudaError_t launch_ffi_backward_inputs(const GroupSharedArgs& args, cudaStream_t stream) {
  return dispatch_fan_in(args.k, [&](auto k_constant) {
    const size_t shared_bytes = args.d * 32 * 4 + kWarps * kLabelBlock * 32 * 4;
    return launch_batch_tiled(ffi_backward_inputs_kernel<decltype(k_constant)::value>, args,
                              kThreads, 32, label_blocks(args), shared_bytes, stream);
  });
}

cudaError_t launch_ffi_backward_weights(const GroupSharedArgs& args, cudaStream_t stream) {
  return dispatch_fan_in(args.k, [&](auto k_constant) {
    const auto kernel = ffi_backward_weights_kernel<decltype(k_constant)::value>;
    constexpr int kPassLabels = kWarps * 16;
    const size_t shared_bytes = args.d * 64 * 2 + kPassLabels * (64 + 8) * 2;
    int resident = 0;
    cudaError_t status = resident_blocks(kernel, kThreads, shared_bytes, resident);
    if (status != cudaSuccess) return status;
    const int64_t passes = (args.G + kPassLabels - 1) / kPassLabels;
    const int grid = static_cast<int>(passes < resident ? passes : resident);
    kernel<<<grid, kThreads, shared_bytes, stream>>>(args, ceil_div(args.B, 64), passes);
    return cudaGetLastError();
  });
}

}  // namespace haste::cuda
