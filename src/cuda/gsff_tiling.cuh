// Pieces the group-shared kernels share: a "stage" of consecutive label groups (the unit one
// pipeline step copies into shared memory), the split of a grid into batch tiles x group
// ranges, and the multi-stage cp.async pipeline that drives each thread block.
#pragma once

#include <cstdint>

#include "cuda/group_shared_launch.hpp"
#include "cuda/tile.cuh"

namespace haste::cuda {

// kGroups consecutive groups of kG labels and fan-in kK, chosen so that one stage holds about
// kTargetWeights weights: small groups are batched so each pipeline step has enough work. With
// kWithBias the stage carries its labels' biases too, so that a kernel adding them reads them
// from shared memory: a global load per stage sat on the forward's path (bench/NOTES.md).
template <int kG, int kK, int kTargetWeights, bool kWithBias = false>
struct GroupStage {
  static constexpr int kGroups = kTargetWeights / (kG * kK) > 1 ? kTargetWeights / (kG * kK) : 1;
  static constexpr int kLabels = kGroups * kG;
  static constexpr int kLabelChunks = kLabels / 8;  // 16-byte chunks of one row of z or dz
  static constexpr int kWeightBytes = kLabels * kK * 2;
  static constexpr int kIndexBytes = kGroups * kK * 4;
  using WeightTile = SwizzledTile<kK / 8>;  // [kLabels][kK]: one label per row

  // Groups of stage `stage` that exist (the last stage may be short).
  __device__ static int groups_in(int64_t stage, int64_t G) {
    const int64_t left = G - stage * kGroups;
    return left < kGroups ? static_cast<int>(left) : kGroups;
  }
  static int64_t count(int64_t G) { return (G + kGroups - 1) / kGroups; }

  // A stage buffer holds the stage's weight tile, then its [kGroups, kK] indices (and biases).
  static constexpr int kBiasBytes = kWithBias ? kLabels * 4 : 0;
  static constexpr int kBufferBytes = kWeightBytes + kIndexBytes + kBiasBytes;
  __device__ static WeightTile weights_in(uint8_t* buffer) {
    return WeightTile{reinterpret_cast<bf16*>(buffer)};
  }
  __device__ static int32_t* indices_in(uint8_t* buffer) {
    return reinterpret_cast<int32_t*>(buffer + kWeightBytes);
  }
  __device__ static float* bias_in(uint8_t* buffer) {
    static_assert(kWithBias, "the stage carries no biases");
    return reinterpret_cast<float*>(buffer + kWeightBytes + kIndexBytes);
  }
  // Issues the asynchronous copies of stage `stage` into `buffer` on threads `thread` of
  // `threads` (by default the whole block).
  __device__ static void load(uint8_t* buffer, int64_t stage, const GroupSharedArgs& a,
                              int thread = threadIdx.x, int threads = blockDim.x) {
    const int groups = groups_in(stage, a.G);
    const bf16* first_weight = a.weights + stage * kLabels * kK;
    load_rows_async(
        weights_in(buffer), groups * kG, kK / 8,
        [&](int label) { return first_weight + label * kK; }, thread, threads);
    load_words_async(indices_in(buffer), a.indices + stage * kGroups * kK, groups * kK, thread,
                     threads);
    if constexpr (kWithBias)
      load_words_async(bias_in(buffer), a.bias + stage * kLabels, groups * kG, thread, threads);
  }
};

// Thread blocks of the forward and backward-to-inputs kernels each own one batch tile and a
// contiguous range of stages. Blocks with the same range are launched next to each other, so
// they stream the same weights at about the same time and all but the first read hit L2.
struct BatchTileWork {
  int batch_tile;
  int64_t stage_begin, stage_end;
};

__device__ inline BatchTileWork batch_tile_work(int batch_tiles, int64_t stages) {
  const int ranges = gridDim.x / batch_tiles;
  const int range = blockIdx.x / batch_tiles;
  return {static_cast<int>(blockIdx.x % batch_tiles), stages * range / ranges,
          stages * (range + 1) / ranges};
}

// Grid size for batch_tile_work: as many ranges as fill the resident blocks, at most one per
// stage.
inline int batch_tile_grid(int batch_tiles, int64_t stages, int resident) {
  int64_t ranges = resident / batch_tiles;
  if (ranges < 1) ranges = 1;
  if (ranges > stages) ranges = stages;
  return static_cast<int>(ranges * batch_tiles);
}

// Launches a kernel(args, batch_tiles, stages) that splits its grid with batch_tile_work, on
// as many blocks as are resident at once.
template <typename Kernel>
cudaError_t launch_batch_tiled(Kernel kernel, const GroupSharedArgs& args, int threads,
                               int batch_tile, int64_t stages, size_t shared_bytes,
                               cudaStream_t stream) {
  int resident = 0;
  cudaError_t status = resident_blocks(kernel, threads, shared_bytes, resident);
  if (status != cudaSuccess) return status;
  const int batch_tiles = ceil_div(args.B, batch_tile);
  const int grid = batch_tile_grid(batch_tiles, stages, resident);
  kernel<<<grid, threads, shared_bytes, stream>>>(args, batch_tiles, stages);
  return cudaGetLastError();
}

// Runs items [begin, end) through a kStages-deep software pipeline: load(item, buffer) issues
// the asynchronous copies of an item into buffer `buffer`, compute(item, buffer) uses them.
// Copies the caller issued before (a tile every item reads) complete with the first item's.
// One barrier per item: it both publishes the item's data and frees the buffer the next load
// overwrites (the one computed in the previous iteration).
template <int kStages, typename Load, typename Compute>
__device__ void run_pipeline(int64_t begin, int64_t end, Load&& load, Compute&& compute) {
  static_assert(kStages >= 2, "a pipeline needs at least two buffers");
  for (int i = 0; i < kStages - 1; ++i) {
    if (begin + i < end) load(begin + i, i);
    commit_async_copies();
  }
  for (int64_t item = begin; item < end; ++item) {
    const int step = static_cast<int>(item - begin);
    wait_async_copies<kStages - 2>();
    __syncthreads();
    if (item + kStages - 1 < end) load(item + kStages - 1, (step + kStages - 1) % kStages);
    commit_async_copies();
    compute(item, step % kStages);
  }
  wait_async_copies<0>();
  __syncthreads();
}

}  // namespace haste::cuda
