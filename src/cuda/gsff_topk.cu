// Fused top-k inference: per batch row, the k best labels of the group-shared tail (logits
// never written to memory) and of the head's materialised logits, merged into one ranking.
//
// Tail kernel tiling: as the forward (gsff_forward.cu): a thread block owns a 64-row batch
// tile, holds its slice of hT in shared memory, and streams a contiguous range of groups
// through a cp.async pipeline, each warp computing 16 rows x some labels of a stage with
// mma.m16n8k16. Instead of storing z, every logit is compared with its row's threshold, the
// smallest key the block keeps for that row (keys rank by score, then the lower id); the few
// that pass are appended (shared atomic counter) to the row's list in global memory (L2). When
// a row's list may not take another stage, the block cuts it and every well-filled list to
// their k best at the next stage barrier (one warp per row) and raises the thresholds. After
// warm-up a threshold is the k-th best of thousands of logits, so almost every logit costs one
// float compare. Measured in bench/NOTES.md ("Fused top-k inference").
// Floor (shape 1 of bench/NOTES.md): the FLOPs of the forward (0.028 ms) or reading W, bias
// and indices once (94 MB, 0.032 ms); z (343 MB) is never written.
//
// Head: one warp per (row, chunk of kHeadChunk columns) keeps the chunk's k best the same way.
// Merge: one warp per row selects the k best of all lists' k keys, sorts them, maps the ids.
#include "cuda/gsff_products.cuh"
#include "cuda/gsff_tiling.cuh"
#include "cuda/topk_launch.hpp"

namespace haste::cuda {
namespace {

// ---- keys and the warp-wide selection -------------------------------------------------------

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kSelectPerLane = kSelectCapacity / kWarpSize;

__device__ inline uint64_t score_key(float score, int32_t label) {
  const uint32_t bits = __float_as_uint(score);
  const uint32_t ordered = bits ^ ((bits >> 31) != 0 ? 0xffffffffu : 0x80000000u);
  return (static_cast<uint64_t>(ordered) << 32) | static_cast<uint32_t>(~label);
}
__device__ inline float key_score(uint64_t key) {
  const uint32_t ordered = static_cast<uint32_t>(key >> 32);
  return __uint_as_float(ordered ^ ((ordered >> 31) != 0 ? 0x80000000u : 0xffffffffu));
}
__device__ inline int32_t key_label(uint64_t key) {
  return static_cast<int32_t>(~static_cast<uint32_t>(key));
}

__device__ inline unsigned lanes_below(int lane) { return (1u << lane) - 1u; }

__device__ inline uint64_t warp_min(uint64_t value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2)
    value = min(value, __shfl_xor_sync(kFullMask, value, offset));
  return value;
}

// Warp-wide. entries[0..n) hold distinct nonzero keys (n <= kSelectCapacity; shared or global
// memory). Keeps the `want` largest in entries[0..want) (in no particular order) and returns
// the smallest kept key; with n <= want nothing changes and it returns 0 (keep everything).
// The want-th largest key is found bit by bit from the top (count the keys at or above a
// candidate prefix), stopping as soon as exactly `want` keys are at or above the prefix.
__device__ uint64_t select_largest(uint64_t* entries, int n, int want, int lane) {
  __syncwarp();
  if (n <= want) return 0;
  uint64_t key[kSelectPerLane];
#pragma unroll
  for (int j = 0; j < kSelectPerLane; ++j) {
    const int i = lane + kWarpSize * j;
    key[j] = i < n ? entries[i] : 0;
  }
  uint64_t prefix = 0;
  for (int bit = 63; bit >= 0; --bit) {
    const uint64_t candidate = prefix | (uint64_t{1} << bit);
    int above = 0;
#pragma unroll
    for (int j = 0; j < kSelectPerLane; ++j) above += key[j] >= candidate ? 1 : 0;
    above = __reduce_add_sync(kFullMask, above);
    if (above >= want) {
      prefix = candidate;
      if (above == want) break;
    }
  }
  // n > want nonzero keys put a bit into prefix, so the empty (0) entries are never kept.
  __syncwarp();
  int base = 0;
  uint64_t smallest = ~uint64_t{0};
#pragma unroll
  for (int j = 0; j < kSelectPerLane; ++j) {
    const bool keep = key[j] >= prefix;
    const unsigned kept = __ballot_sync(kFullMask, keep);
    if (keep) {
      entries[base + __popc(kept & lanes_below(lane))] = key[j];
      smallest = min(smallest, key[j]);
    }
    base += __popc(kept);
  }
  __syncwarp();
  return warp_min(smallest);
}

// Warp-wide: appends each lane's key where `keep` holds to entries[n..) and returns the new n.
__device__ inline int append(uint64_t* entries, int n, uint64_t key, bool keep, int lane) {
  const unsigned kept = __ballot_sync(kFullMask, keep);
  if (keep) entries[n + __popc(kept & lanes_below(lane))] = key;
  return n + __popc(kept);
}

// Warp-wide: cuts a list to its k best and 0-pads it to k entries (what the merge reads).
__device__ inline void finish_list(uint64_t* entries, int n, int k, int lane) {
  if (n > k) {
    select_largest(entries, n, k, lane);
    n = k;
  }
  for (int i = n + lane; i < k; i += kWarpSize) entries[i] = 0;
}

__device__ inline uint64_t* list_of(const TopKLists& lists, int64_t list, int64_t row) {
  return lists.keys + (list * lists.row_stride + row) * lists.capacity;
}

// ---- tail: fused logits + per-block candidate lists -----------------------------------------

constexpr int kWarps = 16;
constexpr int kThreads = kWarps * kWarpSize;
constexpr int kBatchTile = kTopKBatchTile;
constexpr int kStages = 4;
constexpr int kBatchChunks = kBatchTile / 8;

template <int kG, int kK>
using TopKStage = GroupStage<kG, kK, 4096, true>;  // biases staged with the weights

template <int kG, int kK>
constexpr size_t tail_shared_bytes(int64_t d) {
  return static_cast<size_t>(d) * kBatchTile * 2 + kStages * TopKStage<kG, kK>::kBufferBytes +
         kBatchTile * (sizeof(uint64_t) + sizeof(float) + sizeof(int));
}

// The block's hT slice [d][64] into the swizzled tile; batch rows past B are zeros. Rows of hT
// that start on 16 bytes go by cp.async, others (B not a multiple of 8) value by value.
__device__ void load_h_tile(const SwizzledTile<kBatchChunks>& tile, const TopKTailArgs& a,
                            int64_t b0) {
  for (int i = threadIdx.x; i < a.layer.d * kBatchChunks; i += blockDim.x) {
    const int feature = i / kBatchChunks, chunk = i % kBatchChunks;
    const int64_t first = b0 + chunk * 8;
    const bf16* source = a.layer.hT + feature * a.layer.B + first;
    if (a.aligned_rows && first + 8 <= a.layer.B) {
      copy_async_16(tile.chunk_address(feature, chunk), source);
    } else {
      bf16* target = tile.chunk_pointer(feature, chunk);
      for (int v = 0; v < 8; ++v)
        target[v] = first + v < a.layer.B ? source[v] : __float2bfloat16(0.f);
    }
  }
}

template <int kG, int kK>
__global__ void __launch_bounds__(kThreads)
    gsff_topk_kernel(TopKTailArgs a, int batch_tiles, int64_t stages) {
  using Stage = TopKStage<kG, kK>;
  using Item = LogitItem<Stage::kGroups, kG, kBatchTile / 16, kWarps>;

  extern __shared__ __align__(128) uint8_t shared[];
  const SwizzledTile<kBatchChunks> h_tile{reinterpret_cast<bf16*>(shared)};
  uint8_t* stage_memory = shared + a.layer.d * kBatchTile * 2;
  auto buffer_at = [&](int buffer) { return stage_memory + buffer * Stage::kBufferBytes; };
  // Per row of the tile: the smallest key its list keeps (0 until it holds k), that key's
  // score (for the one-compare reject) and the list's length.
  auto* threshold = reinterpret_cast<uint64_t*>(stage_memory + kStages * Stage::kBufferBytes);
  auto* threshold_score = reinterpret_cast<float*>(threshold + kBatchTile);
  auto* length = reinterpret_cast<int*>(threshold_score + kBatchTile);

  const BatchTileWork work = batch_tile_work(batch_tiles, stages);
  const int64_t b0 = static_cast<int64_t>(work.batch_tile) * kBatchTile;
  const int rows = a.layer.B - b0 < kBatchTile ? static_cast<int>(a.layer.B - b0) : kBatchTile;
  const int m_tiles = (rows + 15) / 16;
  const int k = a.lists.k, capacity = a.lists.capacity;
  // A stage adds at most Stage::kLabels keys to a row: select before a list could overflow.
  // Rows fill at different stages; when one must be cut, every row past `mark` is cut with it,
  // so that the block waits for few, well-filled rounds of selection instead of one per row.
  const int limit = capacity - Stage::kLabels, mark = k + (limit - k) / 2;
  const int range = static_cast<int>(blockIdx.x) / batch_tiles;
  uint64_t* lists = list_of(a.lists, range, b0);

  load_h_tile(h_tile, a, b0);
  for (int r = threadIdx.x; r < kBatchTile; r += blockDim.x) {
    threshold[r] = 0;
    threshold_score[r] = key_score(0);  // NaN: no score compares below it
    length[r] = 0;
  }

  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  auto select_full_rows = [&] {
    for (int r = warp; r < rows; r += kWarps) {
      const int n = length[r];
      if (n <= mark) continue;
      const uint64_t smallest = select_largest(lists + r * capacity, n, k, lane);
      if (lane == 0) {
        threshold[r] = smallest;
        threshold_score[r] = key_score(smallest);
        length[r] = k;
      }
    }
  };
  // Logits of a stage against the thresholds; returns whether this thread filled a list past
  // `limit`.
  auto compute = [&](int stage, int buffer) {
    const auto weights = Stage::weights_in(buffer_at(buffer));
    const int32_t* indices = Stage::indices_in(buffer_at(buffer));
    const float* stage_bias = Stage::bias_in(buffer_at(buffer));
    const int groups = Stage::groups_in(stage, a.layer.G);
    bool full = false;
    for (int index = warp; index < Item::kCount; index += kWarps) {
      const Item item(index);
      if (item.group >= groups || item.m_tile >= m_tiles) continue;
      FragC acc[Item::kNTilesPerItem];
      group_logits<kK>(acc, h_tile, weights, indices + item.group * kK, item.group * kG,
                       item.m_tile, item.first_n_tile, lane);
      const int row = item.m_tile * 16 + lane / 4;  // and row + 8 (fragment halves)
      const float row_score[2] = {threshold_score[row], threshold_score[row + 8]};
#pragma unroll
      for (int n = 0; n < Item::kNTilesPerItem; ++n) {
        const int label = item.group * kG + (item.first_n_tile + n) * 8 + 2 * (lane % 4);
        const int64_t slot = static_cast<int64_t>(stage) * Stage::kLabels + label;
        const float2 bias = *reinterpret_cast<const float2*>(stage_bias + label);
        float score[4];
        bool maybe = false;
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          score[e] = acc[n].r[e] + (e % 2 == 0 ? bias.x : bias.y);
          // A key above the threshold has a score not below its score (NaN scores pass too):
          // one compare rejects almost every logit, the exact test below sees the rest.
          maybe = maybe || !(score[e] < row_score[e / 2]);
        }
        if (!maybe) continue;
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int half = e / 2;
          const int64_t s = slot + e % 2;
          const uint64_t key = score_key(score[e], a.first_label + static_cast<int32_t>(s));
          if (key > threshold[row + 8 * half] && s < a.tail_labels && row + 8 * half < rows) {
            const int r = row + 8 * half;
            const int at = atomicAdd(&length[r], 1);
            lists[r * capacity + at] = key;
            full = full || at >= limit;
          }
        }
      }
    }
    return full;
  };

  // The pipeline of run_pipeline (gsff_tiling.cuh), with the selection at the stage barrier:
  // __syncthreads_or tells every thread whether some list needs it, and a second barrier
  // publishes the new thresholds before the next stage's logits.
  const int begin = work.stage_begin, end = work.stage_end;
  const typename Stage::template Copies<kThreads> copies(threadIdx.x);
  auto load = [&](int stage, int buffer) { copies.issue(buffer_at(buffer), stage, a.layer); };
  for (int i = 0; i < kStages - 1; ++i) {
    if (begin + i < end) load(begin + i, i);
    commit_async_copies();
  }
  bool full = false;
  for (int stage = begin; stage < end; ++stage) {
    const int step = stage - begin;
    wait_async_copies<kStages - 2>();
    if (__syncthreads_or(full)) {
      select_full_rows();
      __syncthreads();
    }
    if (stage + kStages - 1 < end) load(stage + kStages - 1, (step + kStages - 1) % kStages);
    commit_async_copies();
    full = compute(stage, step % kStages);
  }
  wait_async_copies<0>();
  __syncthreads();
  for (int r = warp; r < rows; r += kWarps) finish_list(lists + r * capacity, length[r], k, lane);
}

// ---- head: per (row, column chunk) lists from materialised logits ---------------------------

constexpr int kHeadWarps = 8;
constexpr int kHeadValuesPerLane = 4;
constexpr int kHeadStep = kWarpSize * kHeadValuesPerLane;

__global__ void __launch_bounds__(kHeadWarps* kWarpSize) head_topk_kernel(TopKHeadArgs a) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t chunks = (a.H + kHeadChunk - 1) / kHeadChunk;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarpSize;
  if (warp >= a.B * chunks) return;
  const int64_t row = warp / chunks, chunk = warp % chunks;
  uint64_t* list = list_of(a.lists, a.first_list + chunk, row);
  const int64_t begin = chunk * kHeadChunk;
  const int64_t end = begin + kHeadChunk < a.H ? begin + kHeadChunk : a.H;
  const bf16* logits = a.logits + row * a.ld;
  const int k = a.lists.k, limit = a.lists.capacity - kHeadStep;
  uint64_t threshold = 0;
  int n = 0;
  for (int64_t first = begin; first < end; first += kHeadStep) {
    const int64_t column = first + lane * kHeadValuesPerLane;
    float values[kHeadValuesPerLane];
    if (a.aligned_rows && column + kHeadValuesPerLane <= end) {
      const uint2 pair = *reinterpret_cast<const uint2*>(logits + column);
      const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&pair.x));
      const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&pair.y));
      values[0] = lo.x, values[1] = lo.y, values[2] = hi.x, values[3] = hi.y;
    } else {
#pragma unroll
      for (int v = 0; v < kHeadValuesPerLane; ++v)
        values[v] = column + v < end ? __bfloat162float(logits[column + v]) : 0.f;
    }
#pragma unroll
    for (int v = 0; v < kHeadValuesPerLane; ++v) {
      const int64_t c = column + v;
      const bool real = c < end;
      const float score = values[v] + (a.bias != nullptr && real ? a.bias[c] : 0.f);
      const uint64_t key = real ? score_key(score, static_cast<int32_t>(c)) : 0;
      n = append(list, n, key, key > threshold, lane);
    }
    if (n > limit) {
      threshold = select_largest(list, n, k, lane);
      n = k;
    }
  }
  finish_list(list, n, k, lane);
}

// ---- merge: each row's k best of all lists, sorted, as original label ids --------------------

constexpr int kMergeWarps = 4;
constexpr int kMergeKeysPerLane = 4;

__global__ void __launch_bounds__(kMergeWarps* kWarpSize) topk_merge_kernel(TopKMergeArgs a) {
  __shared__ uint64_t buffers[kMergeWarps][kSelectCapacity];
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kMergeWarps + warp;
  if (row >= a.B) return;
  uint64_t* buffer = buffers[warp];
  // Each lane has kMergeKeysPerLane loads in flight: a row's lists are read by one warp.
  const int k = a.lists.k, limit = kSelectCapacity - kWarpSize * kMergeKeysPerLane;
  const int64_t total = static_cast<int64_t>(a.list_count) * k;
  uint64_t threshold = 0;
  int n = 0;
  for (int64_t first = 0; first < total; first += kWarpSize * kMergeKeysPerLane) {
    uint64_t keys[kMergeKeysPerLane];
#pragma unroll
    for (int j = 0; j < kMergeKeysPerLane; ++j) {
      const int64_t i = first + j * kWarpSize + lane;
      keys[j] = i < total ? list_of(a.lists, i / k, row)[i % k] : 0;
    }
#pragma unroll
    for (int j = 0; j < kMergeKeysPerLane; ++j)
      n = append(buffer, n, keys[j], keys[j] > threshold, lane);
    if (n > limit) {
      threshold = select_largest(buffer, n, k, lane);
      n = k;
    }
  }
  select_largest(buffer, n, k, lane);
  n = n < k ? n : k;
  // Rank of each kept key = how many kept keys are larger (keys are distinct).
  float* scores = a.scores + row * k;
  int32_t* labels = a.labels + row * k;
  for (int i = lane; i < k; i += kWarpSize) {
    if (i >= n) {
      scores[i] = -INFINITY;
      labels[i] = -1;
      continue;
    }
    const uint64_t key = buffer[i];
    int rank = 0;
    for (int j = 0; j < n; ++j) rank += buffer[j] > key ? 1 : 0;
    const int32_t id = key_label(key);
    scores[rank] = key_score(key);
    labels[rank] = a.label_map != nullptr ? a.label_map[id] : id;
  }
}

}  // namespace

cudaError_t plan_gsff_topk(const GroupSharedArgs& layer, int& batch_tiles, int& ranges) {
  return dispatch_group_shape(layer.g, layer.k, [&](auto g_constant, auto k_constant) {
    constexpr int kG = decltype(g_constant)::value, kK = decltype(k_constant)::value;
    int resident = 0;
    const cudaError_t status = resident_blocks(gsff_topk_kernel<kG, kK>, kThreads,
                                               tail_shared_bytes<kG, kK>(layer.d), resident);
    if (status != cudaSuccess) return status;
    batch_tiles = ceil_div(layer.B, kBatchTile);
    ranges =
        batch_tile_grid(batch_tiles, TopKStage<kG, kK>::count(layer.G), resident) / batch_tiles;
    return cudaSuccess;
  });
}

cudaError_t launch_gsff_topk(const TopKTailArgs& args, int batch_tiles, int ranges,
                             cudaStream_t stream) {
  return dispatch_group_shape(args.layer.g, args.layer.k, [&](auto g_constant, auto k_constant) {
    constexpr int kG = decltype(g_constant)::value, kK = decltype(k_constant)::value;
    gsff_topk_kernel<kG, kK>
        <<<batch_tiles * ranges, kThreads, tail_shared_bytes<kG, kK>(args.layer.d), stream>>>(
            args, batch_tiles, TopKStage<kG, kK>::count(args.layer.G));
    return cudaGetLastError();
  });
}

cudaError_t launch_head_topk(const TopKHeadArgs& args, cudaStream_t stream) {
  const int64_t warps = args.B * ((args.H + kHeadChunk - 1) / kHeadChunk);
  head_topk_kernel<<<ceil_div(warps, kHeadWarps), kHeadWarps * kWarpSize, 0, stream>>>(args);
  return cudaGetLastError();
}

cudaError_t launch_topk_merge(const TopKMergeArgs& args, cudaStream_t stream) {
  topk_merge_kernel<<<ceil_div(args.B, kMergeWarps), kMergeWarps * kWarpSize, 0, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace haste::cuda
