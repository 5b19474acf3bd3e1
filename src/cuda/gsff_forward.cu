// Group-shared forward on the tensor cores: Zg = Hg Wg^T + bias for every group.
//
// Tiling: a thread block owns one batch tile of 64 rows and a range of groups. It copies its
// slice of hT ([d, 64], at most 128 KB) into shared memory once; the gather Hg = h[:, idx[G]]
// is then free, because ldmatrix takes one row address per lane and each row is simply the
// feature idx[G][j]. Groups stream through a 3- or 4-deep cp.async pipeline (weights + indices of a
// few groups per stage), and each warp computes a group's logits for 32 batch rows of a stage
// (16 rows and part of the labels where a stage is one group) with mma.m16n8k16 (M = batch, N =
// labels, K = fan-in), its fp32 accumulators starting at the bias. The stage's z tile ([64
// rows][stage labels] bf16, written with stmatrix) goes through shared memory (two buffers) and
// leaves as whole 16-byte pieces of z rows, one stage later: written straight from the fragments,
// each store covered 16-byte pieces of 8 rows (v4). Floor (shape 1 of bench/NOTES.md): read W once
// (86 MB) and write z once (343 MB).
#include <type_traits>

#include "cuda/gsff_products.cuh"
#include "cuda/gsff_tiling.cuh"

namespace haste::cuda {
namespace {

constexpr int kBatchTile = 64;
constexpr int kBatchChunks = kBatchTile / 8;

// Shared memory at this (g, k, d) with stages of kWeights weights, kDepth of them in flight:
// the hT slice, the pipeline's buffers and two z tiles.
template <int kG, int kK, int kWeights, int kDepth>
__host__ __device__ constexpr size_t forward_bytes(int64_t d) {
  using Stage = GroupStage<kG, kK, kWeights, true>;
  return static_cast<size_t>(d) * kBatchTile * 2 + kDepth * Stage::kBufferBytes +
         2 * kBatchTile * Stage::kLabels * 2;
}
// A stage size and pipeline depth. Every stage costs a barrier and a round of latencies, so
// larger stages spend less per weight (shape 1 of bench/NOTES.md: 0.45 -> 0.30 ms).
template <int kG, int kK, int kWeightsPerStage, int kPipelineDepth>
struct ForwardPlan {
  static constexpr int kDepth = kPipelineDepth;
  using Stage = GroupStage<kG, kK, kWeightsPerStage, true>;
  // 8 warps. A warp's item is 2 m-tiles of a group, so that each weight fragment serves both
  // (with items of one m-tile on 16 warps, 4 warps loaded each: 0.236 -> 0.201 ms at shape 1 of
  // bench/NOTES.md, 0.643 -> 0.656 at shape 2). A stage of one group keeps items of one m-tile,
  // whose warps split the n-tiles (16 warps then loaded each gathered A fragment 4 times).
  static constexpr int kWarps = 8;
  static constexpr int kMTilesPerItem = Stage::kGroups > 1 ? 2 : 1;
  static constexpr int kThreads = kWarps * kWarpSize;
  static constexpr size_t shared_bytes(int64_t d) {
    return forward_bytes<kG, kK, kWeightsPerStage, kPipelineDepth>(d);
  }
};
// Stages of 8192 weights where they fit at d = 768 (a 4-deep, else a 3-deep pipeline); the
// small plan (4096 weights, 4 deep) where not, and for wider d.
constexpr size_t kForwardSharedBytes = 227 * 1024;
template <int kG, int kK>
using SmallForwardPlan = ForwardPlan<kG, kK, 4096, 4>;
template <int kG, int kK>
using LargeForwardPlan = std::conditional_t<
    forward_bytes<kG, kK, 8192, 4>(768) <= kForwardSharedBytes, ForwardPlan<kG, kK, 8192, 4>,
    std::conditional_t<forward_bytes<kG, kK, 8192, 3>(768) <= kForwardSharedBytes,
                       ForwardPlan<kG, kK, 8192, 3>, SmallForwardPlan<kG, kK>>>;

template <int kG, int kK, typename Plan>
__global__ void __launch_bounds__(Plan::kThreads)
    gsff_forward_kernel(GroupSharedArgs a, int batch_tiles, int64_t stages) {
  using Stage = typename Plan::Stage;
  constexpr int kStages = Plan::kDepth;
  constexpr int kWarps = Plan::kWarps, kThreads = Plan::kThreads;
  using Item = LogitItem<Stage::kGroups, kG, kBatchTile / 16, kWarps, Plan::kMTilesPerItem>;
  constexpr int kItemMTiles = Plan::kMTilesPerItem;

  extern __shared__ __align__(128) uint8_t shared[];
  const SwizzledTile<kBatchChunks> h_tile{reinterpret_cast<bf16*>(shared)};
  uint8_t* stage_memory = shared + a.d * kBatchTile * 2;
  auto buffer_at = [&](int buffer) { return stage_memory + buffer * Stage::kBufferBytes; };
  using ZTile = SwizzledTile<Stage::kLabelChunks>;  // [kBatchTile rows][stage labels]
  auto z_tile_at = [&](int stage) {
    return ZTile{reinterpret_cast<bf16*>(stage_memory + kStages * Stage::kBufferBytes +
                                         stage % 2 * kBatchTile * Stage::kLabels * 2)};
  };

  const BatchTileWork work = batch_tile_work(batch_tiles, stages);
  const int b0 = work.batch_tile * kBatchTile;
  const int rows = a.B - b0 < kBatchTile ? static_cast<int>(a.B - b0) : kBatchTile;
  const int m_tiles = rows / 16;
  const int64_t L = a.G * kG;

  load_rows_async(h_tile, static_cast<int>(a.d), rows / 8,
                  [&](int feature) { return a.hT + feature * a.B + b0; });

  const typename Stage::template Copies<kThreads> copies(threadIdx.x);
  auto load = [&](int stage, int buffer) { copies.issue(buffer_at(buffer), stage, a); };

  // Block-wide, after a barrier: writes stage `stage`'s z tile to z, 16 bytes per thread.
  const BatchRowPieces<kBatchTile, Stage::kLabelChunks, kThreads> z_pieces(threadIdx.x, L);
  auto store_z = [&](int stage) {
    const uint8_t* tile = reinterpret_cast<const uint8_t*>(z_tile_at(stage).base);
    z_pieces.each(b0 * L + static_cast<int64_t>(stage) * Stage::kLabels, rows,
                  Stage::groups_in(stage, a.G) * kG / 8,
                  [&](uint32_t tile_offset, int64_t element) {
                    *reinterpret_cast<uint4*>(a.z + element) =
                        *reinterpret_cast<const uint4*>(tile + tile_offset);
                  });
  };

  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  auto compute = [&](int stage, int buffer) {
    // The pipeline's barrier ended the previous stage's tile writes (and the stores of the
    // stage before it, which used this stage's tile buffer).
    if (stage > work.stage_begin) store_z(stage - 1);
    const ZTile z_tile = z_tile_at(stage);
    const auto weights = Stage::weights_in(buffer_at(buffer));
    const int32_t* indices = Stage::indices_in(buffer_at(buffer));
    const float* stage_bias = Stage::bias_in(buffer_at(buffer));
    const int groups = Stage::groups_in(stage, a.G);
    for (int index = warp; index < Item::kCount; index += kWarps) {
      const Item item(index);
      // (An item's second m-tile past the tile's rows is computed but never stored.)
      if (item.group >= groups || item.m_tile >= m_tiles) continue;
      // The products add onto the bias, which comes with the stage's weights (a global load
      // here sat on every stage's critical path: 0.30 -> 0.27 ms at shape 1, 1.08 -> 0.74 ms
      // at shape 2).
      constexpr int kNTiles = Item::kNTilesPerItem;
      FragC acc[kItemMTiles][kNTiles];
#pragma unroll
      for (int n = 0; n < kNTiles; ++n) {
        const int label = item.group * kG + (item.first_n_tile + n) * 8 + 2 * (lane % 4);
        const float2 bias = *reinterpret_cast<const float2*>(stage_bias + label);
#pragma unroll
        for (int m = 0; m < kItemMTiles; ++m) acc[m][n] = FragC{{bias.x, bias.y, bias.x, bias.y}};
      }
      group_logits<kK>(acc, h_tile, weights, indices + item.group * kK, item.group * kG,
                       item.m_tile, item.first_n_tile, lane);
#pragma unroll
      for (int m = 0; m < kItemMTiles; ++m)
        store_row_fragments(z_tile, acc[m], (item.m_tile + m) * 16,
                            item.group * kG / 8 + item.first_n_tile, lane);
    }
  };
  run_pipeline<kStages>(work.stage_begin, work.stage_end, load, compute);
  if (work.stage_end > work.stage_begin) store_z(work.stage_end - 1);  // after its barrier
}

}  // namespace

cudaError_t launch_gsff_forward(const GroupSharedArgs& args, cudaStream_t stream) {
  return dispatch_group_shape(args.g, args.k, [&](auto g_constant, auto k_constant) {
    constexpr int kG = decltype(g_constant)::value, kK = decltype(k_constant)::value;
    auto launch = [&](auto plan) {
      using Plan = decltype(plan);
      return launch_batch_tiled(gsff_forward_kernel<kG, kK, Plan>, args, Plan::kThreads, kBatchTile,
                                Plan::Stage::count(args.G), Plan::shared_bytes(args.d), stream);
    };
    using Large = LargeForwardPlan<kG, kK>;
    if (Large::shared_bytes(args.d) <= kForwardSharedBytes) return launch(Large{});
    return launch(SmallForwardPlan<kG, kK>{});
  });
}

}  // namespace haste::cuda
