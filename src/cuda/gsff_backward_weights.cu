// Group-shared backward to weights on the tensor cores: dWg = dZg^T Hg, dbias = column sums
// of dZg, for every group.
//
// dWg is a reduction over the whole batch, so a thread block owns a stage of groups and walks
// all batch tiles of 64 rows, keeping dWg^T (slots x labels) in registers: no atomics, and dW
// is written once, in bf16. Each pipeline item (2 deep) is one (stage, batch tile): the
// gathered rows Hg^T = hT[idx[G], tile] (k rows of 64 values, coalesced cp.async from hT,
// which sits in L2) and the dz tile [64, stage labels]. Warps compute dWg^T += Hg^T dZg with
// mma.m16n8k16 (M = slots, N = labels, K = batch rows). Blocks stride over stages.
// Floor (shape 1): read dz once (343 MB), write dW once (86 MB).
#include "cuda/gsff_tiling.cuh"

namespace haste::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * kWarpSize;
constexpr int kBatchTile = 64;
// Two buffers, not three: shared memory limits the resident blocks (ncu: 37.5% occupancy with
// three), and a fourth block per SM hides more than a deeper pipeline (shape 1 of
// bench/NOTES.md: 0.40 -> 0.38 ms; the other shapes unchanged; 32-row batch tiles were slower).
constexpr int kStages = 2;

// About two groups per stage, from 2048 to 4096 weights: at g = 32, k = 64 two groups (4096)
// took 0.61 -> 0.51 ms, at g = 32, k = 32 four (4096) were slower than two (2048): 1.46 vs 1.38
// (H100, bench/NOTES.md).
constexpr int stage_weights(int g, int k) {
  return 2 * g * k < 2048 ? 2048 : 2 * g * k > 4096 ? 4096 : 2 * g * k;
}
template <int kG, int kK>
using WeightsStage = GroupStage<kG, kK, stage_weights(kG, kK)>;

template <int kG, int kK>
__host__ __device__ constexpr size_t gathered_bytes() {
  return static_cast<size_t>(WeightsStage<kG, kK>::kGroups) * kK * kBatchTile * 2;
}

template <int kG, int kK>
__host__ __device__ constexpr size_t stage_bytes() {
  return gathered_bytes<kG, kK>() + kBatchTile * WeightsStage<kG, kK>::kLabels * 2;
}

template <int kG, int kK>
__global__ void __launch_bounds__(kThreads)
    gsff_backward_weights_kernel(GroupSharedArgs a, int batch_tiles, int64_t stages) {
  using Stage = WeightsStage<kG, kK>;
  using GatheredTile = SwizzledTile<kBatchTile / 8>;  // [stage slots][64 batch values]
  using DzTile = SwizzledTile<Stage::kLabelChunks>;   // [64 batch rows][stage labels]
  // Accumulator tiles of a stage: (group, 16-slot m-tile, 8-label n-tile), spread evenly
  // over the warps, consecutive tiles of a warp sharing the m-tile.
  constexpr int kNTiles = kG / 8;
  constexpr int kTiles = Stage::kGroups * (kK / 16) * kNTiles;
  static_assert(kTiles % kWarps == 0, "every warp owns the same number of tiles");
  constexpr int kTilesPerWarp = kTiles / kWarps;
  // A warp's tiles come in runs of consecutive n-tiles of one m-tile, which share the gathered
  // Hg^T fragment: it is loaded once per run and k-step.
  constexpr int kRun = kTilesPerWarp < kNTiles ? kTilesPerWarp : kNTiles;

  extern __shared__ __align__(128) uint8_t shared[];
  auto gathered_in = [&](int buffer) {
    return GatheredTile{reinterpret_cast<bf16*>(shared + buffer * stage_bytes<kG, kK>())};
  };
  auto dz_in = [&](int buffer) {
    return DzTile{reinterpret_cast<bf16*>(shared + buffer * stage_bytes<kG, kK>() +
                                          gathered_bytes<kG, kK>())};
  };

  const int64_t L = a.G * kG;
  const int my_stages =
      blockIdx.x < stages ? static_cast<int>((stages - blockIdx.x + gridDim.x - 1) / gridDim.x) : 0;
  // Item i of this block: stage blockIdx.x + (i / batch_tiles) * gridDim.x, batch tile
  // i % batch_tiles (32-bit: a 64-bit division is a long call, and it ran twice per item).
  auto stage_of = [&](int item) {
    return static_cast<int>(blockIdx.x + item / batch_tiles * gridDim.x);
  };
  auto b0_of = [&](int item) { return item % batch_tiles * kBatchTile; };
  auto rows_of = [&](int item) {
    const int b0 = b0_of(item);
    return a.B - b0 < kBatchTile ? static_cast<int>(a.B - b0) : kBatchTile;
  };

  // This thread's pieces of the gathered tile (slot, 16-byte batch chunk), worked out once.
  constexpr int kGatheredChunks = kBatchTile / 8;
  constexpr int kGatheredPieces = ceil_div(Stage::kGroups * kK * kGatheredChunks, kThreads);
  int gathered_slot[kGatheredPieces], gathered_chunk[kGatheredPieces];
  uint32_t gathered_offset[kGatheredPieces];
#pragma unroll
  for (int p = 0; p < kGatheredPieces; ++p) {
    const int piece = threadIdx.x + p * kThreads;
    gathered_slot[p] = piece / kGatheredChunks;
    gathered_chunk[p] = piece % kGatheredChunks;
    gathered_offset[p] = GatheredTile::chunk_offset(gathered_slot[p], gathered_chunk[p]);
  }
  const BatchRowPieces<kBatchTile, Stage::kLabelChunks, kThreads> dz_pieces(threadIdx.x, L);

  auto load = [&](int item, int buffer) {
    const int stage = stage_of(item);
    const int b0 = b0_of(item), rows = rows_of(item);
    const int groups = Stage::groups_in(stage, a.G);
    const int32_t* indices = a.indices + static_cast<int64_t>(stage) * Stage::kGroups * kK;
    const uint32_t gathered = shared_address(gathered_in(buffer).base);
#pragma unroll
    for (int p = 0; p < kGatheredPieces; ++p) {
      if (gathered_slot[p] < groups * kK && gathered_chunk[p] < rows / 8)
        copy_async_16(gathered + gathered_offset[p],
                      a.hT + __ldg(indices + gathered_slot[p]) * a.B + b0 + gathered_chunk[p] * 8);
    }
    const uint32_t dz = shared_address(dz_in(buffer).base);
    dz_pieces.each(b0 * L + static_cast<int64_t>(stage) * Stage::kLabels, rows, groups * kG / 8,
                   [&](uint32_t tile_offset, int64_t element) {
                     copy_async_16(dz + tile_offset, a.dz + element);
                   });
  };

  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int matrix = lane / 8, row = lane % 8;
  FragC acc[kTilesPerWarp];
  // dbias: every warp sums kPairs label pairs of the stage's dz columns, its lanes splitting the
  // rows (two warps summing whole columns took 4x the others' instructions per item: the
  // block waited for them at every barrier).
  constexpr int kPairs = Stage::kLabels / 2 / kWarps;  // label pairs of one warp
  static_assert(kPairs >= 1 && kWarpSize % kPairs == 0, "label pairs spread over the lanes");
  constexpr int kRowLanes = kWarpSize / kPairs;  // lanes that share a pair
  const int bias_pair = warp * kPairs + lane % kPairs, bias_row = lane / kPairs;
  float2 bias_sum = make_float2(0.f, 0.f);

  auto compute = [&](int item, int buffer) {
    const auto gathered = gathered_in(buffer);
    const auto dz = dz_in(buffer);
    const int stage = stage_of(item);
    const int rows = rows_of(item);
    const int groups = Stage::groups_in(stage, a.G);
#pragma unroll
    for (int t0 = 0; t0 < kTilesPerWarp; t0 += kRun) {
      const int tile0 = warp * kTilesPerWarp + t0;
      const int n_tile0 = tile0 % kNTiles, m_tile = (tile0 / kNTiles) % (kK / 16);
      const int group = tile0 / kNTiles / (kK / 16);
      if (group >= groups) continue;
      for (int ks = 0; ks < rows / 16; ++ks) {
        // A = Hg^T: slot rows, batch contiguous.
        FragA frag_a;
        load_matrix_x4(frag_a.r,
                       gathered.chunk_address(group * kK + m_tile * 16 + row + 8 * (matrix % 2),
                                              ks * 2 + matrix / 2));
#pragma unroll
        for (int r = 0; r < kRun; ++r) {
          // B = dZg: batch x labels, stored as batch rows (transposed for the fragment).
          FragB frag_b;
          load_matrix_x2_trans(
              frag_b.r[0], frag_b.r[1],
              dz.chunk_address(ks * 16 + row + 8 * (matrix % 2), (group * kG) / 8 + n_tile0 + r));
          mma(acc[t0 + r], frag_a, frag_b);
        }
      }
    }
    for (int r = bias_row; r < rows; r += kRowLanes) {
      const uint32_t pair = *reinterpret_cast<const uint32_t*>(dz.chunk_pointer(r, bias_pair / 4) +
                                                               bias_pair % 4 * 2);
      const float2 values = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&pair));
      bias_sum.x += values.x;
      bias_sum.y += values.y;
    }

    if (item % batch_tiles != batch_tiles - 1) return;
    // Last batch tile of the stage: write dWg (label-major) and dbias, reset the sums.
    const int64_t first_label = static_cast<int64_t>(stage) * Stage::kLabels;
#pragma unroll
    for (int t = 0; t < kTilesPerWarp; ++t) {
      const int tile = warp * kTilesPerWarp + t;
      const int n_tile = tile % kNTiles, m_tile = (tile / kNTiles) % (kK / 16);
      const int group = tile / kNTiles / (kK / 16);
      if (group < groups) {
        const int slot = m_tile * 16 + lane / 4;
        bf16* out = a.dweights + (first_label + group * kG + n_tile * 8 + 2 * (lane % 4)) * kK;
        out[slot] = __float2bfloat16_rn(acc[t].r[0]);
        out[kK + slot] = __float2bfloat16_rn(acc[t].r[1]);
        out[slot + 8] = __float2bfloat16_rn(acc[t].r[2]);
        out[kK + slot + 8] = __float2bfloat16_rn(acc[t].r[3]);
      }
      acc[t] = FragC{};
    }
#pragma unroll
    for (int offset = kPairs; offset < kWarpSize; offset *= 2) {
      bias_sum.x += __shfl_xor_sync(0xffffffff, bias_sum.x, offset);
      bias_sum.y += __shfl_xor_sync(0xffffffff, bias_sum.y, offset);
    }
    if (bias_row == 0 && 2 * bias_pair < groups * kG)
      *reinterpret_cast<float2*>(a.dbias + first_label + 2 * bias_pair) = bias_sum;
    bias_sum = make_float2(0.f, 0.f);
  };
  run_pipeline<kStages>(0, my_stages * batch_tiles, load, compute);
}

}  // namespace

cudaError_t launch_gsff_backward_weights(const GroupSharedArgs& args, cudaStream_t stream) {
  return dispatch_group_shape(args.g, args.k, [&](auto g_constant, auto k_constant) {
    constexpr int kG = decltype(g_constant)::value, kK = decltype(k_constant)::value;
    const auto kernel = gsff_backward_weights_kernel<kG, kK>;
    const size_t shared_bytes = kStages * stage_bytes<kG, kK>();
    int resident = 0;
    cudaError_t status = resident_blocks(kernel, kThreads, shared_bytes, resident);
    if (status != cudaSuccess) return status;
    const int64_t stages = WeightsStage<kG, kK>::count(args.G);
    const int grid = static_cast<int>(stages < resident ? stages : resident);
    kernel<<<grid, kThreads, shared_bytes, stream>>>(args, ceil_div(args.B, kBatchTile), stages);
    return cudaGetLastError();
  });
}

}  // namespace haste::cuda
