// Group-shared backward to inputs on the tensor cores: dh[:, idx[G]] += dZg Wg for every group.
//
// The scatter-add into shared features is what makes this product hard: global fp32 atomics
// per element (G * B * k of them) would swamp the memory system. Instead a thread block owns a
// batch tile of 64 or 32 rows and a range of groups, and accumulates dhT[:, tile] ([d, rows]
// fp32) in shared memory; it adds that to global memory once, at the end (d * rows atomics per
// block). Per stage (a few groups, 2- or 3-deep cp.async pipeline) warp w computes
// dHg^T = Wg^T dZg^T for batch columns 8w .. 8w + 7 of every group and 16-slot m-tile with
// mma.m16n8k16 (M = slots, N = batch, K = labels; g = 8 pads K with zeros) and adds it into
// the accumulator rows idx[G][slot]. Warps own disjoint columns and a group's slots are
// distinct features, so these adds need no atomics (shared-memory atomics made v1 5x slower).
// Floor (shape 1): read dz once (343 MB) and W once (86 MB).
#include "cuda/gsff_products.cuh"
#include "cuda/gsff_tiling.cuh"

namespace haste::cuda {
namespace {

// A batch tile, stage size and pipeline depth. Warp w owns the tile's batch columns
// 8w .. 8w + 7. With 4 warps a block is latency-bound, so where two blocks fit on an SM at this
// d (32 rows, small stages, 2 deep: 108 KB at g = 32, k = 64, d = 768) they beat one block with
// larger stages (shape 1 of bench/NOTES.md: 0.93 -> 0.63 ms). One stage of lead left the loads'
// latency exposed, though: a block of 64 rows and 8 warps with a 3-deep pipeline (217 KB at that
// shape) is used where it fits (0.482 -> 0.449 ms there; 2 deep, where 3 do not fit, was slower
// than two 32-row blocks: bench/NOTES.md). Wide d or g * k = 8192 take the one-block plan.
template <int kG, int kK, int kBatchRows, int kWeightsPerStage, int kPipelineDepth>
struct InputsPlan {
  static constexpr int kRows = kBatchRows;
  static constexpr int kWarps = kRows / 8;
  static constexpr int kThreads = kWarps * kWarpSize;
  static constexpr int kDepth = kPipelineDepth;
  using Stage = GroupStage<kG, kK, kWeightsPerStage>;
  // The stage's buffer (weights, indices), then its dz tile.
  __host__ __device__ static constexpr size_t stage_bytes() {
    return Stage::kBufferBytes + kRows * Stage::kLabels * 2;
  }
  static constexpr size_t shared_bytes(int64_t d) {
    return static_cast<size_t>(d) * kRows * 4 + kDepth * stage_bytes();
  }
};
template <int kG, int kK>
using WidePlan = InputsPlan<kG, kK, 64, 2048, 3>;
template <int kG, int kK>
using TwoPerSmPlan = InputsPlan<kG, kK, 32, 2048, 2>;
template <int kG, int kK>
using OnePerSmPlan = InputsPlan<kG, kK, 32, 4096, 3>;
// Two blocks fit on an SM when both, with the 1 KB the system reserves per block, fit in its
// 228 KB (Hopper); one block gets at most 227 KB.
constexpr size_t kSharedBytesPerSm = 228 * 1024, kReservedPerBlock = 1024;
constexpr size_t kSharedBytesPerBlock = 227 * 1024;

template <int kG, int kK, typename Plan>
__global__ void __launch_bounds__(Plan::kThreads)
    gsff_backward_inputs_kernel(GroupSharedArgs a, int batch_tiles, int64_t stages) {
  using Stage = typename Plan::Stage;
  constexpr int kStages = Plan::kDepth, kBatchTile = Plan::kRows, kThreads = Plan::kThreads;
  using DzTile = SwizzledTile<Stage::kLabelChunks>;  // [batch rows][stage labels]
  constexpr int kMTiles = kK / 16;

  extern __shared__ __align__(128) uint8_t shared[];
  const FeatureAccumulator<kBatchTile> accumulator{reinterpret_cast<float*>(shared)};
  uint8_t* stage_memory = shared + a.d * kBatchTile * 4;
  auto buffer_at = [&](int buffer) { return stage_memory + buffer * Plan::stage_bytes(); };
  auto dz_in = [&](int buffer) {
    return DzTile{reinterpret_cast<bf16*>(buffer_at(buffer) + Stage::kBufferBytes)};
  };

  const BatchTileWork work = batch_tile_work(batch_tiles, stages);
  const int b0 = work.batch_tile * kBatchTile;
  const int rows = a.B - b0 < kBatchTile ? static_cast<int>(a.B - b0) : kBatchTile;
  const int64_t L = a.G * kG;
  accumulator.zero(a.d);

  const typename Stage::template Copies<kThreads> copies(threadIdx.x);
  const BatchRowPieces<kBatchTile, Stage::kLabelChunks, kThreads> dz_pieces(threadIdx.x, L);
  auto load = [&](int stage, int buffer) {
    copies.issue(buffer_at(buffer), stage, a);
    const uint32_t tile = shared_address(dz_in(buffer).base);
    dz_pieces.each(b0 * L + static_cast<int64_t>(stage) * Stage::kLabels, rows,
                   Stage::groups_in(stage, a.G) * kG / 8,
                   [&](uint32_t tile_offset, int64_t element) {
                     copy_async_16(tile + tile_offset, a.dz + element);
                   });
  };

  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  auto compute = [&](int stage, int buffer) {
    const auto weights = Stage::weights_in(buffer_at(buffer));
    const auto dz = dz_in(buffer);
    const int32_t* indices = Stage::indices_in(buffer_at(buffer));
    const int groups = Stage::groups_in(stage, a.G);
    const int n_tile = warp;  // this warp's batch columns
    if (n_tile * 8 >= rows) return;
    // All of a group's m-tiles at once: one dZ^T fragment per k-step serves them all, and the
    // accumulator's old values are all read before the first write (shape 3 of
    // bench/NOTES.md: 2.14 -> 1.77 ms).
    for (int group = 0; group < groups; ++group) {
      FragC tiles[kMTiles];
      group_input_gradients<kG>(tiles, weights, dz, group * kG, 0, n_tile, lane);
      accumulator.add(tiles, indices + group * kK, 0, n_tile, lane);
    }
  };
  run_pipeline<kStages>(work.stage_begin, work.stage_end, load, compute);

  // run_pipeline ends with a barrier: the accumulator is complete.
  accumulator.add_to(a.dhT, a.B, b0, a.d, rows);
}

}  // namespace

cudaError_t launch_gsff_backward_inputs(const GroupSharedArgs& args, cudaStream_t stream) {
  return dispatch_group_shape(args.g, args.k, [&](auto g_constant, auto k_constant) {
    constexpr int kG = decltype(g_constant)::value, kK = decltype(k_constant)::value;
    auto launch = [&](auto plan) {
      using Plan = decltype(plan);
      return launch_batch_tiled(gsff_backward_inputs_kernel<kG, kK, Plan>, args, Plan::kThreads,
                                Plan::kRows, Plan::Stage::count(args.G), Plan::shared_bytes(args.d),
                                stream);
    };
    using Wide = WidePlan<kG, kK>;
    if (Wide::shared_bytes(args.d) <= kSharedBytesPerBlock) return launch(Wide{});
    using TwoPerSm = TwoPerSmPlan<kG, kK>;
    if (2 * (TwoPerSm::shared_bytes(args.d) + kReservedPerBlock) <= kSharedBytesPerSm)
      return launch(TwoPerSm{});
    return launch(OnePerSmPlan<kG, kK>{});
  });
}

}  // namespace haste::cuda
