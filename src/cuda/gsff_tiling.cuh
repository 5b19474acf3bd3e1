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
  // (32-bit: stage indices and group counts fit, and 64-bit arithmetic on them was a visible
  // share of the per-stage instructions.)
  __device__ static int groups_in(int stage, int64_t G) {
    const int left = static_cast<int>(G) - stage * kGroups;
    return left < kGroups ? left : kGroups;
  }
  static int64_t count(int64_t G) { return (G + kGroups - 1) / kGroups; }

  // A stage is its weight tile and its index part: the [kGroups, kK] indices, then the biases.
  // A stage buffer holds the two one after the other; a kernel may also keep them apart (the
  // fused training kernel reads a stage's indices longer than its weights).
  static constexpr int kBiasBytes = kWithBias ? kLabels * 4 : 0;
  static constexpr int kIndexPartBytes = kIndexBytes + kBiasBytes;
  static constexpr int kBufferBytes = kWeightBytes + kIndexPartBytes;
  __device__ static WeightTile weights_in(uint8_t* buffer) {
    return WeightTile{reinterpret_cast<bf16*>(buffer)};
  }
  __device__ static uint8_t* index_part_in(uint8_t* buffer) { return buffer + kWeightBytes; }
  __device__ static int32_t* part_indices(uint8_t* index_part) {
    return reinterpret_cast<int32_t*>(index_part);
  }
  __device__ static float* part_bias(uint8_t* index_part) {
    static_assert(kWithBias, "the stage carries no biases");
    return reinterpret_cast<float*>(index_part + kIndexBytes);
  }
  __device__ static int32_t* indices_in(uint8_t* buffer) {
    return part_indices(index_part_in(buffer));
  }
  __device__ static float* bias_in(uint8_t* buffer) { return part_bias(index_part_in(buffer)); }
  // The asynchronous copies of a stage into a buffer, shared by kThreads threads. A thread
  // copies the same 16-byte pieces of every stage (only the stage's place in global memory
  // moves), so the loops over them unroll with compile-time bounds and strides: per-stage copy
  // loops with run-time bounds and index arithmetic were a quarter of the forward's
  // instructions (bench/NOTES.md).
  template <int kThreads>
  class Copies {
   public:
    __device__ explicit Copies(int thread) : thread_(thread) {}
    // Issues stage `stage`'s copies into `buffer` (the caller commits them).
    __device__ void issue(uint8_t* buffer, int stage, const GroupSharedArgs& a) const {
      issue(buffer, index_part_in(buffer), stage, a);
    }
    // The same with the weight tile and the index part in separate places.
    __device__ void issue(uint8_t* weight_tile, uint8_t* index_part, int stage,
                          const GroupSharedArgs& a) const {
      const int groups = groups_in(stage, a.G);
      const uint32_t tile = shared_address(weight_tile), part = shared_address(index_part);
      const bf16* weights = a.weights + static_cast<int64_t>(stage) * kLabels * kK;
#pragma unroll
      for (int p = 0; p < kWeightPieces; ++p) {
        const int chunk = thread_ + p * kThreads;
        if (chunk < groups * kG * kK / 8)
          copy_async_16(tile + WeightTile::chunk_offset(chunk / (kK / 8), chunk % (kK / 8)),
                        weights + chunk * 8);
      }
      copy_words<kGroups * kK>(part, a.indices + static_cast<int64_t>(stage) * kGroups * kK,
                               groups * kK);
      if constexpr (kWithBias)
        copy_words<kLabels>(part + kIndexBytes, a.bias + static_cast<int64_t>(stage) * kLabels,
                            groups * kG);
    }

   private:
    static constexpr int kWeightPieces = ceil_div(kWeightBytes / 16, kThreads);
    // `count` (at most kMaxWords, a multiple of 4) 4-byte words to `shared`.
    template <int kMaxWords, typename Word>
    __device__ void copy_words(uint32_t shared, const Word* global, int count) const {
#pragma unroll
      for (int p = 0; p < ceil_div(kMaxWords, 4 * kThreads); ++p) {
        const int word = (thread_ + p * kThreads) * 4;
        if (word < count) copy_async_16(shared + word * 4, global + word);
      }
    }
    int thread_;
  };
};

// The 16-byte pieces that thread `thread` of kThreads moves between a shared [kRows][kChunks
// x 8] tile of z or dz (SwizzledTile<kChunks>) and kRows rows of a [B, L] matrix, at the
// columns of one stage. A thread moves the same pieces of every stage, so their addresses are
// worked out once: per stage, a division by the stage's width and 64-bit row products were a
// large share of the forward's instructions (bench/NOTES.md).
template <int kRows, int kChunks, int kThreads>
class BatchRowPieces {
 public:
  __device__ BatchRowPieces(int thread, int64_t L) {
#pragma unroll
    for (int p = 0; p < kPieces; ++p) {
      const int piece = thread + p * kThreads;
      row_[p] = piece / kChunks;
      chunk_[p] = piece % kChunks;
      tile_offset_[p] = SwizzledTile<kChunks>::chunk_offset(row_[p], chunk_[p]);
      matrix_offset_[p] = row_[p] * L + chunk_[p] * 8;
    }
  }
  // Calls move(tile byte offset, matrix element offset) for this thread's pieces of the
  // stage whose first element (tile row 0, first label) is `first`, and whose first `rows`
  // rows and `chunks` label chunks exist.
  template <typename Move>
  __device__ void each(int64_t first, int rows, int chunks, Move&& move) const {
#pragma unroll
    for (int p = 0; p < kPieces; ++p)
      if (row_[p] < rows && chunk_[p] < chunks) move(tile_offset_[p], first + matrix_offset_[p]);
  }

 private:
  static constexpr int kPieces = ceil_div(kRows * kChunks, kThreads);
  int row_[kPieces], chunk_[kPieces];
  uint32_t tile_offset_[kPieces];
  int64_t matrix_offset_[kPieces];
};

// Thread blocks of the forward and backward-to-inputs kernels each own one batch tile and a
// contiguous range of stages. Blocks with the same range are launched next to each other, so
// they stream the same weights at about the same time and all but the first read hit L2.
struct BatchTileWork {
  int batch_tile;
  int stage_begin, stage_end;
};

__device__ inline BatchTileWork batch_tile_work(int batch_tiles, int64_t stages) {
  const int ranges = gridDim.x / batch_tiles;
  const int range = blockIdx.x / batch_tiles;
  return {static_cast<int>(blockIdx.x % batch_tiles), static_cast<int>(stages * range / ranges),
          static_cast<int>(stages * (range + 1) / ranges)};
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
__device__ void run_pipeline(int begin, int end, Load&& load, Compute&& compute) {
  static_assert(kStages >= 2, "a pipeline needs at least two buffers");
  for (int i = 0; i < kStages - 1; ++i) {
    if (begin + i < end) load(begin + i, i);
    commit_async_copies();
  }
  for (int item = begin; item < end; ++item) {
    const int step = item - begin;
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
