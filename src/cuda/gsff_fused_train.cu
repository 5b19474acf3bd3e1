// Fused group-shared training pass: logits, BCE-with-logits loss, dZ, dW, dbias and dh in one
// sweep over the label groups; the B x L logits and dZ never leave the chip.
//
// Tiling: a thread-block cluster of up to 8 blocks covers up to 256 batch rows, 32 per block,
// and a range of stages (groups of up to 8192 weights each). Every block keeps its slice of hT
// ([d, 32] bf16) and of the dh accumulator ([d, 32] fp32) in shared memory for the whole run.
// The block is two teams of 8 warps that work on consecutive stages at once (fused v4; in v3
// every phase waited for the one before, and ncu showed warps idle on barriers):
//   logits team, stage s + 1: streams the stage's weights (cp.async, 2 buffers), computes the
//     logits (mma), then the loss and dZ = sigmoid(z) / B as if every target were 0
//     (branch-free) into a dZ tile (bf16), and adds its dbias partial with global atomics;
//     lane r of its first warp then recomputes the few logits of row r that have a target and
//     corrects their loss, dZ and dbias; then warps 4-7 add dHg = dZg Wg into the dh
//     accumulator (one 8-column batch slice each, so no two warps touch one element);
//   gradient team, stage s: each warp computes this block's partial dWg = dZg^T Hg (K = its 32
//     rows; bf16) of a group's labels and a part of its slots; after a cluster barrier, block r
//     of the cluster sums slice r of every block's partials through distributed shared memory
//     and writes dW once, or applies the optimizer update to those weights right there (the
//     training step's update fused in: no dW in memory; a thread's weights and optimizer state
//     are loaded before the cluster barrier that precedes the sums).
// Fused v5 (bench/NOTES.md) moved dh from the gradient team, the critical one, to the logits
// team, and publishes the partials with one thread's fence: a release by every thread of the
// team waited for each thread's update stores of the stage before. Fused v6 double-buffers the
// partials, so a stage takes one cluster barrier instead of two ("partials complete" and
// "partials read"): 1.39-1.42 -> 1.26-1.30 ms at shape 1.
// Floor (bench/NOTES.md, shape 1): 3 products of 22 GFLOP, 0.083 ms at the measured bf16 rate;
// fused v4 was at 1.44 ms, latency-bound (ncu: 9.6 cycles per issued instruction, 16 warps).
// The dZ tile is double-buffered. The logits team takes part in the gradient team's cluster
// barrier of the stage before (arriving as it starts), then both teams meet at a hand-over
// barrier: the logits team runs one stage ahead, and its next loads and dZ tile reuse only
// buffers the gradient team has finished with.
#include <cooperative_groups.h>

#include <climits>
#include <type_traits>

#include "cuda/gsff_products.cuh"
#include "cuda/gsff_tiling.cuh"
#include "cuda/optimizer_element.cuh"

namespace haste::cuda {
namespace {

namespace cg = cooperative_groups;

constexpr int kRows = 32;  // batch rows of one block
constexpr int kTeamWarps = 8;
constexpr int kTeamThreads = kTeamWarps * kWarpSize;
constexpr int kThreads = 2 * kTeamThreads;  // warps 0-7: logits team; 8-15: gradient team
constexpr int kBatchNTiles = kRows / 8;     // dh: logits-team warp 4 + w owns batch n-tile w
constexpr int kMaxRanks = kFusedTrainRows / kRows;
static_assert(kFusedTrainRows % kRows == 0 && kMaxRanks <= 8,
              "a cluster holds at most 8 blocks (the portable cluster size)");

// Named barriers (0 is __syncthreads): each team's own, and the hand-over of a stage between
// the teams (both wait: racecheck does not see a bar.arrive as ordering).
enum Barrier : int { kLogitsTeam = 1, kHandOver = 2, kGradientTeam = 3 };
template <int kId, int kCount>
__device__ inline void named_sync() {
  asm volatile("bar.sync %0, %1;\n" ::"n"(kId), "n"(kCount) : "memory");
}

// Dynamic shared memory: 2 weight tiles and 3 index parts of stages, 2 dZ tiles and 2 tiles of
// bf16 dW partials, then the d-sized hT slice and dh accumulator (at g = 32, k = 64, d = 768:
// exactly the 227 KB a block gets). The logits team loads stage s + 1 while it works on stage s,
// and the gradient team reads only the indices of stage s - 1 meanwhile, hence 3 index parts
// but 2 weight tiles; the 16 KB this saves (a third weight tile in fused v5) double-buffers the
// partials, so that a stage takes one cluster barrier (fused v6).
template <int kG, int kK, int kStageWeights, bool kWithBias>
struct FusedLayout {
  using Stage = GroupStage<kG, kK, kStageWeights, kWithBias>;
  static constexpr int kIndexDepth = 3;
  static constexpr size_t kDzTileBytes = kRows * Stage::kLabels * 2;
  static constexpr size_t kPartialBytes = Stage::kLabels * kK * 2;
  static constexpr size_t kIndexParts = 2 * Stage::kWeightBytes;
  static constexpr size_t kDz = kIndexParts + kIndexDepth * Stage::kIndexPartBytes;
  static constexpr size_t kPartials = kDz + 2 * kDzTileBytes;
  static constexpr size_t kHTile = kPartials + 2 * kPartialBytes;
  __host__ __device__ static constexpr size_t accumulator(int64_t d) {
    return kHTile + d * kRows * 2;
  }
  __host__ __device__ static constexpr size_t bytes(int64_t d) {
    return accumulator(d) + d * kRows * 4;
  }
};

// The largest stage whose layout fits in the H100's 227 KB of shared memory per block at
// d = 768: every stage costs a fixed chain of barriers, so fewer, larger stages spend less
// time waiting per weight (fused v3: 8192 weights where they fit); its biases staged with it
// where they fit too (else the logits team loads them from global memory).
constexpr int64_t kLargestFusedD = 768;
constexpr size_t kSharedBytesPerBlock = 227 * 1024;
template <int kG, int kK, int kStageWeights>
using FusedLayoutWithBiasIfFits = std::conditional_t<
    FusedLayout<kG, kK, kStageWeights, true>::bytes(kLargestFusedD) <= kSharedBytesPerBlock,
    FusedLayout<kG, kK, kStageWeights, true>, FusedLayout<kG, kK, kStageWeights, false>>;
template <int kG, int kK>
using FusedLayoutOf = std::conditional_t<
    FusedLayout<kG, kK, 8192, false>::bytes(kLargestFusedD) <= kSharedBytesPerBlock,
    FusedLayoutWithBiasIfFits<kG, kK, 8192>, FusedLayoutWithBiasIfFits<kG, kK, 4096>>;

// Every arrival is relaxed: a release orders all of the thread's earlier memory operations at
// GPU scope and so waited for its global stores to reach L2 (ncu: 17% of stalls on its membar,
// fused v3; the update's stores, fused v5). The one arrival that publishes something (the dW
// partials) is preceded by cluster_fence() in one thread after a team barrier.
__device__ inline void cluster_arrive_relaxed() {
  asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory");
}
// Makes this thread's earlier writes, and those it has seen through a barrier, visible to the
// cluster before its next arrival.
__device__ inline void cluster_fence() { asm volatile("fence.acq_rel.cluster;\n" ::: "memory"); }
__device__ inline void cluster_wait() {
  asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}

// The multi-function unit's approximations (flush-to-zero: no subnormal fix-ups).
__device__ inline float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ inline float fast_log2(float x) {
  float y;
  asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ inline float fast_reciprocal(float x) {
  float y;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// The loss of one logit is softplus(z) - z y = linear + ln(2) log2_part with linear =
// max(z, 0) - z y and log2_part = log2(1 + e^-|z|); each thread sums the two parts apart.
struct LossParts {
  float linear = 0.f, log2_part = 0.f;
};
constexpr float kLog2E = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

// dZ of a logit whose target is 0 (all but a handful of the B x L): sigmoid(z) / B, and its
// loss softplus(z) added to `loss`. Branch-free, one exp2, one log2 and one reciprocal, so
// that the many independent logits of a warp overlap (fused v4; per-element branches on the
// target and the label bound made v3's epilogue a serial chain). Targets are fixed up after.
__device__ inline float zero_target_gradient(float z, float inv_batch, LossParts& loss) {
  const float e = fast_exp2(-fabsf(z) * kLog2E);  // in (0, 1]: no overflow
  const float p = 1.f + e;
  loss.log2_part += fast_log2(p);
  loss.linear += fmaxf(z, 0.f);
  const float r = fast_reciprocal(p) * inv_batch;
  return z >= 0.f ? r : e * r;
}

// sigmoid(z) - y without overflow; for y = 1 it is -sigmoid(-z), which keeps its precision
// where sigmoid(z) rounds to 1 (as on the CPU). For the few logits with a target.
__device__ inline float sigmoid(float z) {
  const float e = __expf(-fabsf(z));  // in (0, 1]: no overflow
  return __fdividef(z >= 0 ? 1.f : e, 1.f + e);
}
__device__ inline float sigmoid_minus(float z, float y) {
  return y == 1.f ? -sigmoid(-z) : sigmoid(z) - y;
}

// Adds the column sums of a warp's C fragments to dbias[0 .. 8 kNTiles): lane t holds, for
// each n-tile n, the sums of columns 8n + 2 (t % 4) and + 1 over its rows, and the 8 lanes of a
// column (t / 4) hold its 8 row groups. Each round of this reduce-scatter halves the values a
// lane keeps and adds its partner's sums of them, so after three rounds the lanes hold whole
// sums of distinct columns and the warp adds them with one atomic per lane. (Shuffling every
// sum to lanes 0-3, as before, took 3 rounds per value, and 4 lanes did all the atomics.)
template <int kNTiles>
__device__ inline void add_column_sums(float (&sums)[2 * kNTiles], float* dbias, int lane) {
  constexpr int kValues = 2 * kNTiles;
  constexpr int kSplits = kValues >= 8 ? 3 : kValues == 4 ? 2 : 1;  // rounds that halve
  constexpr int kKept = kValues >> kSplits;
#pragma unroll
  for (int round = 0; round < 3; ++round) {
    const int offset = 16 >> round;
    if (round < kSplits) {
      const int half = kValues >> (round + 1);
      const bool upper = lane & offset;  // keeps values half .. 2 half - 1 (moved to 0 ..)
#pragma unroll
      for (int i = 0; i < half; ++i) {
        const float send = upper ? sums[i] : sums[i + half];
        const float keep = upper ? sums[i + half] : sums[i];
        sums[i] = keep + __shfl_xor_sync(0xffffffffu, send, offset);
      }
    } else {  // fewer values than rounds: the rest is a plain sum (equal in the lanes paired)
      sums[0] += __shfl_xor_sync(0xffffffffu, sums[0], offset);
    }
  }
  // Value i of this lane is value i + kKept * part of the original ones (part: the halves it
  // kept); of the lanes paired by plain sums, the one with those lane bits clear adds.
  const int part = (lane >> 2) >> (3 - kSplits);
  if (((lane >> 2) & ((1 << (3 - kSplits)) - 1)) != 0) return;
#pragma unroll
  for (int i = 0; i < kKept; ++i) {
    const int value = i + kKept * part;
    atomicAdd(dbias + value / 2 * 8 + 2 * (lane % 4) + value % 2, sums[i]);
  }
}

// Walks one batch row's sorted CSR targets over consecutive stages: visit() hands the targets
// of a stage to a function and moves past them.
struct TargetCursor {
  const TailTargetsDevice* targets = nullptr;
  int64_t position = 0, end = 0, next_column = LLONG_MAX;

  TargetCursor() = default;  // for threads that own no row

  // Starts at the row's first target column at or after tail label `first_label`.
  __device__ TargetCursor(const TailTargetsDevice& y, int64_t row, int64_t first_label)
      : targets(&y), position(y.indptr[row]), end(y.indptr[row + 1]) {
    int64_t low = position, high = end;
    while (low < high) {
      const int64_t middle = (low + high) / 2;
      if (y.indices[middle] < y.range.first + first_label)
        low = middle + 1;
      else
        high = middle;
    }
    position = low;
    advance_to(position);
  }
  __device__ void advance_to(int64_t at) {
    position = at;
    next_column = at < end ? targets->indices[at] : LLONG_MAX;
  }
  // Calls visit(label - label0, value) for the targets of tail labels [label0, label_end).
  template <typename Visit>
  __device__ void visit(int64_t label0, int64_t label_end, Visit&& visit) {
    const int64_t column0 = targets->range.first + label0;
    while (next_column < targets->range.first + label_end) {
      const float value = targets->values ? targets->values[position] : 1.f;
      visit(static_cast<int>(next_column - column0), value);
      advance_to(position + 1);
    }
  }
};

// Partial dWg = dZg^T Hg of one block's rows for every label of a group (M = labels, in
// kMTiles m-tiles; K = batch rows; N = slots) and slots n_tile0*8 .. + kNTiles*8, into
// `partials` ([labels][kK] bf16, so the cluster reduction reads whole 16-byte pieces of dW
// rows). Each gathered Hg fragment serves every m-tile (fused v5: one item per m-tile loaded
// it once per m-tile).
template <int kG, int kK, int kMTiles, int kNTiles, typename DzTile, typename HTile,
          typename PartialTile>
__device__ void partial_weight_gradient(const DzTile& dz, const HTile& h_tile,
                                        const int32_t* group_indices, const PartialTile& partials,
                                        int label0, int n_tile0, int rows, int lane) {
  static_assert(kNTiles % 2 == 0, "B fragments come in pairs of slot n-tiles");
  const int matrix = lane / 8, row = lane % 8;
  FragC acc[kMTiles][kNTiles];
#pragma unroll
  for (int ks = 0; ks < kRows / 16; ++ks) {
    if (ks * 16 >= rows) break;
    FragA a[kMTiles];  // A = dZg^T: labels x batch, stored as batch rows of dz (transposed)
#pragma unroll
    for (int m = 0; m < kMTiles; ++m) {
      const int first_label = label0 + m * 16;
      if constexpr (kG == 8) {  // labels 8-15 do not exist: a1 = a3 = 0
        load_matrix_x2_trans(a[m].r[0], a[m].r[2],
                             dz.chunk_address(ks * 16 + 8 * (matrix % 2) + row, first_label / 8));
      } else {
        load_matrix_x4_trans(a[m].r, dz.chunk_address(ks * 16 + 8 * (matrix / 2) + row,
                                                      first_label / 8 + matrix % 2));
      }
    }
#pragma unroll
    for (int n = 0; n < kNTiles; n += 2) {
      // B = Hg: batch x slots, stored as the slots' feature rows of h_tile.
      const int slot = (n_tile0 + n) * 8 + 8 * (matrix / 2) + row;
      uint32_t b[4];
      load_matrix_x4(b, h_tile.chunk_address(group_indices[slot], ks * 2 + matrix % 2));
#pragma unroll
      for (int m = 0; m < kMTiles; ++m) {
        mma(acc[m][n], a[m], FragB{{b[0], b[1]}});
        mma(acc[m][n + 1], a[m], FragB{{b[2], b[3]}});
      }
    }
  }
#pragma unroll
  for (int m = 0; m < kMTiles; ++m) {
    const int label = label0 + m * 16 + lane / 4;
#pragma unroll
    for (int n = 0; n < kNTiles; ++n) {
      const int slot = (n_tile0 + n) * 8 + 2 * (lane % 4);
      *reinterpret_cast<uint32_t*>(partials.chunk_pointer(label, slot / 8) + slot % 8) =
          pack_bf16x2(acc[m][n].r[0], acc[m][n].r[1]);
      if constexpr (kG > 8)
        *reinterpret_cast<uint32_t*>(partials.chunk_pointer(label + 8, slot / 8) + slot % 8) =
            pack_bf16x2(acc[m][n].r[2], acc[m][n].r[3]);
    }
  }
}

template <int kG, int kK>
__global__ void __launch_bounds__(kThreads, 1)
    gsff_fused_train_kernel(FusedTrainArgs f, int64_t stages) {
  using Layout = FusedLayoutOf<kG, kK>;
  using Stage = typename Layout::Stage;
  using Item = LogitItem<Stage::kGroups, kG, kRows / 16, kTeamWarps>;
  using LabelTile = SwizzledTile<Stage::kLabelChunks>;  // [32 batch rows][stage labels]
  using PartialTile = SwizzledTile<kK / 8>;             // [stage labels][kK]
  constexpr int kLabels = Stage::kLabels;
  const GroupSharedArgs& a = f.layer;
  const cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const int ranks = static_cast<int>(cluster.num_blocks());

  extern __shared__ __align__(128) uint8_t shared[];
  auto weights_at = [&](int step) { return shared + step % 2 * Stage::kWeightBytes; };
  auto index_part_at = [&](int step) {
    return shared + Layout::kIndexParts + step % Layout::kIndexDepth * Stage::kIndexPartBytes;
  };
  auto dz_tile_at = [&](int step) {
    return LabelTile{
        reinterpret_cast<bf16*>(shared + Layout::kDz + step % 2 * Layout::kDzTileBytes)};
  };
  auto partials_at = [&](int step) {
    return PartialTile{
        reinterpret_cast<bf16*>(shared + Layout::kPartials + step % 2 * Layout::kPartialBytes)};
  };
  const SwizzledTile<kRows / 8> h_tile{reinterpret_cast<bf16*>(shared + Layout::kHTile)};
  const FeatureAccumulator<kRows> accumulator{
      reinterpret_cast<float*>(shared + Layout::accumulator(a.d))};

  const int64_t b0 = f.batch_begin + rank * kRows;
  const int rows = f.batch_rows - rank * kRows < kRows ? f.batch_rows - rank * kRows : kRows;
  const int real_rows = static_cast<int>(f.real_rows - b0 < 0      ? 0
                                         : f.real_rows - b0 < rows ? f.real_rows - b0
                                                                   : rows);
  const int clusters = gridDim.x / ranks, cluster_index = blockIdx.x / ranks;
  const int stage_begin = static_cast<int>(stages * cluster_index / clusters);
  const int steps = static_cast<int>(stages * (cluster_index + 1) / clusters) - stage_begin;

  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int team_warp = warp % kTeamWarps;
  const bool logits_team = warp < kTeamWarps;

  accumulator.zero(a.d);
  load_rows_async(h_tile, static_cast<int>(a.d), rows / 8,
                  [&](int feature) { return a.hT + feature * a.B + b0; });
  commit_async_copies();
  wait_async_copies<0>();
  __syncthreads();
  // One cluster barrier phase per step: phase s completes once every block's dW partials of
  // step s are written. Each block reads the partials of step s after phase s and before it
  // arrives at phase s + 1, so once phase s + 1 is complete the partials buffer of step s may
  // take those of step s + 2. A last phase keeps every block until no other reads its partials.
  // Both teams wait for phase s between the hand-overs of steps s and s + 1 (the logits team
  // just before the second, which the gradient team reaches only after that wait anyway):
  // compute-sanitizer's racecheck hung on a version whose teams waited in different intervals.

  LossParts loss;  // this thread's share, before the 1 / B
  if (logits_team) {
    // Warp 0's lane r walks row r's targets.
    TargetCursor cursor = team_warp == 0 && lane < real_rows
                              ? TargetCursor(f.targets, b0 + lane, stage_begin * kLabels)
                              : TargetCursor{};
    const typename Stage::template Copies<kTeamThreads> copies(threadIdx.x);
    auto load = [&](int step) {
      if (step < steps) copies.issue(weights_at(step), index_part_at(step), stage_begin + step, a);
      commit_async_copies();
    };
    load(0);
    for (int step = 0; step < steps; ++step) {
      const int stage = stage_begin + step;
      // Stage step + 1's weights go to the tile of step - 1, which this team finished before the
      // hand-over at the end of the previous step, and its indices to the part of step - 2,
      // which the gradient team finished before that hand-over.
      load(step + 1);
      // The phase of step - 1, arrived at as this step starts (arriving after the step, as in
      // the first v4 version, held every block's reduction until the logits were done).
      if (step >= 1) cluster_arrive_relaxed();
      const LabelTile dz_tile = dz_tile_at(step);
      const int groups = Stage::groups_in(stage, a.G);
      const int labels = groups * kG;
      const int64_t labels_left = f.targets.range.count - stage * kLabels;
      const int real_labels = static_cast<int>(labels_left < 0        ? 0
                                               : labels_left < labels ? labels_left
                                                                      : labels);
      const auto weights = Stage::weights_in(weights_at(step));
      const int32_t* indices = Stage::part_indices(index_part_at(step));
      const float* stage_bias = [&] {
        if constexpr (Stage::kBiasBytes > 0)
          return static_cast<const float*>(Stage::part_bias(index_part_at(step)));
        else
          return a.bias + stage * kLabels;
      }();
      wait_async_copies<1>();
      named_sync<kLogitsTeam, kTeamThreads>();  // the stage's weights are in place

      // Logits, loss and dZ as if every target were 0; labels past real_labels (padding, only
      // in the tail's last stage) and padding rows (only in a short batch) get dZ = 0 and no
      // loss.
      auto logits_and_gradient = [&](auto masked) {
        for (int index = team_warp; index < Item::kCount; index += kTeamWarps) {
          const Item item(index);
          if (item.group >= groups || item.m_tile * 16 >= rows) continue;
          constexpr int kNTiles = Item::kNTilesPerItem;
          const int first_label = item.group * kG + item.first_n_tile * 8;  // a multiple of 8
          auto label_of = [&](int n) { return first_label + n * 8 + 2 * (lane % 4); };
          float2 bias[kNTiles];  // read first: a global load overlaps the mma
#pragma unroll
          for (int n = 0; n < kNTiles; ++n)
            bias[n] = *reinterpret_cast<const float2*>(stage_bias + label_of(n));
          FragC acc[kNTiles];
          group_logits<kK>(acc, h_tile, weights, indices + item.group * kK, item.group * kG,
                           item.m_tile, item.first_n_tile, lane);
          FragC dz[kNTiles];
          float column_sums[2 * kNTiles];  // dbias over the item's 16 rows, 2 labels per n-tile
          const int tile_row = item.m_tile * 16 + lane / 4;
#pragma unroll
          for (int n = 0; n < kNTiles; ++n) {
            const int label = label_of(n);
            const float bias_of[2] = {bias[n].x, bias[n].y};
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              if constexpr (decltype(masked)::value) {
                LossParts part;
                const float value =
                    zero_target_gradient(acc[n].r[e] + bias_of[e % 2], f.inv_batch, part);
                const bool real = label + e % 2 < real_labels && tile_row + e / 2 * 8 < real_rows;
                dz[n].r[e] = real ? value : 0.f;
                loss.linear += real ? part.linear : 0.f;
                loss.log2_part += real ? part.log2_part : 0.f;
              } else {
                dz[n].r[e] = zero_target_gradient(acc[n].r[e] + bias_of[e % 2], f.inv_batch, loss);
              }
            }
            column_sums[2 * n] = dz[n].r[0] + dz[n].r[2];
            column_sums[2 * n + 1] = dz[n].r[1] + dz[n].r[3];
          }
          store_row_fragments(dz_tile, dz, item.m_tile * 16, first_label / 8, lane);
          // Every block adds its own dbias partial, so dbias starts at 0: the host clears it.
          add_column_sums<kNTiles>(column_sums, a.dbias + stage * kLabels + first_label, lane);
        }
      };
      if (real_labels == labels && real_rows == rows)
        logits_and_gradient(std::false_type{});
      else
        logits_and_gradient(std::true_type{});

      // Lane r of warp 0 corrects its row's few logits with a target: it recomputes z from the
      // tiles (fp32 sums of the same bf16 products) and overwrites their dZ.
      named_sync<kLogitsTeam, kTeamThreads>();
      if (team_warp == 0 && lane < real_rows) {
        cursor.visit(stage * kLabels, stage * kLabels + labels, [&](int label, float y) {
          if (label >= real_labels) return;  // a column past the tail (another shard)
          const int32_t* group_indices = indices + label / kG * kK;
          float z = a.bias[stage * kLabels + label];
          for (int j = 0; j < kK; ++j)
            z += __bfloat162float(weights.at(label, j)) *
                 __bfloat162float(h_tile.at(group_indices[j], lane));
          loss.linear -= z * y;
          const float dz = sigmoid_minus(z, y) * f.inv_batch;
          dz_tile.chunk_pointer(lane, label / 8)[label % 8] = __float2bfloat16(dz);
          atomicAdd(a.dbias + stage * kLabels + label, dz - sigmoid(z) * f.inv_batch);
        });
      }
      // dh: warps 4-7 (warp 0 corrects the targets' dZ) each add one 8-column batch slice, every
      // group in order (groups may share features), once the corrected dZ is in place.
      named_sync<kLogitsTeam, kTeamThreads>();
      constexpr int kFirstInputWarp = kTeamWarps - kBatchNTiles;
      if (team_warp >= kFirstInputWarp) {
        const int n_tile = team_warp - kFirstInputWarp;
        constexpr int kSlotTiles = kK / 16;
        if (n_tile * 8 < rows) {
          for (int group = 0; group < groups; ++group) {
            FragC tiles[kSlotTiles];  // all before the adds: independent mma chains
            group_input_gradients<kG>(tiles, weights, dz_tile, group * kG, 0, n_tile, lane);
            accumulator.add(tiles, indices + group * kK, 0, n_tile, lane);
            __syncwarp();  // the next group's reads of shared features see these adds
          }
        }
      }
      if (step >= 1) cluster_wait();
      named_sync<kHandOver, kThreads>();  // stage step goes to the gradient team
    }
    if (steps >= 1) {  // the phase of the last step
      cluster_arrive_relaxed();
      cluster_wait();
    }
    cluster_arrive_relaxed();  // the last phase
    wait_async_copies<0>();    // the empty groups committed past the end
  } else {
    // A dW item: every label of a group, kSlotPart slot n-tiles (at most half of them, so that
    // a stage of 4 groups gives each warp an item; at most 8 accumulator tiles).
    constexpr int kLabelMTiles = (kG + 15) / 16;
    constexpr int kSlotPart = kK / 16 < 8 / kLabelMTiles ? kK / 16 : 8 / kLabelMTiles;
    constexpr int kItemsPerGroup = kK / 8 / kSlotPart;
    const bf16* rank_partials[kMaxRanks];  // every block's partials, through DSMEM
    const PartialTile first_partials = partials_at(0);
#pragma unroll
    for (int r = 0; r < kMaxRanks; ++r)
      rank_partials[r] =
          r < ranks ? cluster.map_shared_rank(first_partials.base, static_cast<unsigned>(r))
                    : first_partials.base;
    for (int step = 0; step < steps; ++step) {
      const int stage = stage_begin + step;
      const LabelTile dz_tile = dz_tile_at(step);
      const int32_t* indices = Stage::part_indices(index_part_at(step));
      const PartialTile partials = partials_at(step);
      const int groups = Stage::groups_in(stage, a.G);
      const int labels = groups * kG;
      named_sync<kHandOver, kThreads>();  // the logits team wrote the stage's dZ
      // This block's slice of the stage's dW (summed below) in pieces of 4 values (8 bytes), so
      // that at g = 32, k = 64 every thread of the team takes one piece.
      const int64_t first_label = stage * kLabels;
      constexpr int kPieceValues = 4, kPiecesPerLabel = kK / kPieceValues;
      const int pieces = labels * kPiecesPerLabel;
      const int piece_begin = pieces * rank / ranks, piece_end = pieces * (rank + 1) / ranks;
      auto element_of = [&](int q) {
        return (first_label + q / kPiecesPerLabel) * kK + q % kPiecesPerLabel * kPieceValues;
      };

      for (int item = team_warp; item < groups * kItemsPerGroup; item += kTeamWarps) {
        const int group = item / kItemsPerGroup, part = item % kItemsPerGroup;
        partial_weight_gradient<kG, kK, kLabelMTiles, kSlotPart>(
            dz_tile, h_tile, indices + group * kK, partials, group * kG, part * kSlotPart, rows,
            lane);
      }
      // Publishes the partials: once the team has written them, one thread's cluster-scope fence
      // covers every write it has seen through the team barrier. (Each thread's own release
      // waited for that thread's global stores of the update before: fused v5.) The team's last
      // thread fences: it has no piece of the update, so no stores to wait for, when the slice
      // has fewer pieces than the team has threads (k = 32: 4.41 -> 4.36 ms at 3M labels).
      named_sync<kGradientTeam, kTeamThreads>();
      if (threadIdx.x == kThreads - 1) cluster_fence();
      cluster_arrive_relaxed();
      // The update of this thread's first piece needs its weights and optimizer state: loaded
      // now, they arrive while the cluster meets (at g = 32, k = 64 every thread has one piece).
      const int first_piece = piece_begin + threadIdx.x - kTeamThreads;
      Bf16x4Operands first_operands;
      if (f.updated_weights && first_piece < piece_end)
        first_operands = load_bf16x4(f.update, f.updated_weights, element_of(first_piece));
      cluster_wait();  // every block's partials are complete

      // The slice's dW: sums over the ranks' partials, then stored, or (the batch's whole
      // gradient, one launch) handed straight to the optimizer update.
      for (int q = first_piece; q < piece_end; q += kTeamThreads) {
        const int label = q / kPiecesPerLabel, slot = q % kPiecesPerLabel * kPieceValues;
        const size_t offset =
            partials.chunk_pointer(label, slot / 8) + slot % 8 - first_partials.base;
        uint2 parts[kMaxRanks];  // all remote loads in flight at once
#pragma unroll
        for (int r = 0; r < kMaxRanks; ++r) {
          if (r < ranks) parts[r] = *reinterpret_cast<const uint2*>(rank_partials[r] + offset);
        }
        const int64_t element = element_of(q);
        float sum[kPieceValues] = {0.f, 0.f, 0.f, 0.f};
        if (f.accumulate) add_bf16x4(sum, *reinterpret_cast<const uint2*>(a.dweights + element));
#pragma unroll
        for (int r = 0; r < kMaxRanks; ++r) {
          if (r < ranks) add_bf16x4(sum, parts[r]);
        }
        if (f.updated_weights) {
          update_bf16x4(
              f.update,
              q == first_piece ? first_operands : load_bf16x4(f.update, f.updated_weights, element),
              sum, f.updated_weights, element);
        } else {
          *reinterpret_cast<uint2*>(a.dweights + element) = pack_bf16x4(sum);
        }
      }
    }
    cluster_arrive_relaxed();  // the last phase: this block has read every partial it needs
  }
  cluster_wait();  // no block leaves while another may still read its partials
  __syncthreads();

  accumulator.add_to(a.dhT, a.B, b0, a.d, rows);
  float sum = loss.linear + kLn2 * loss.log2_part;
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  if (lane == 0 && logits_team) atomicAdd(f.loss, static_cast<double>(sum) * f.inv_batch);
}

}  // namespace

size_t gsff_fused_train_shared_bytes(int64_t g, int64_t k, int64_t d) {
  size_t bytes = 0;
  dispatch_group_shape(g, k, [&](auto g_constant, auto k_constant) {
    bytes = FusedLayoutOf<decltype(g_constant)::value, decltype(k_constant)::value>::bytes(d);
    return cudaSuccess;
  });
  return bytes;
}

cudaError_t launch_gsff_fused_train(const FusedTrainArgs& args, cudaStream_t stream) {
  return dispatch_group_shape(args.layer.g, args.layer.k, [&](auto g_constant, auto k_constant) {
    constexpr int kG = decltype(g_constant)::value, kK = decltype(k_constant)::value;
    const auto kernel = gsff_fused_train_kernel<kG, kK>;
    using Layout = FusedLayoutOf<kG, kK>;
    const size_t shared_bytes = Layout::bytes(args.layer.d);
    cudaError_t status = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                              static_cast<int>(shared_bytes));
    if (status != cudaSuccess) return status;
    const int ranks = ceil_div(args.batch_rows, kRows);
    cudaLaunchAttribute cluster_shape{};
    cluster_shape.id = cudaLaunchAttributeClusterDimension;
    cluster_shape.val.clusterDim.x = static_cast<unsigned>(ranks);
    cluster_shape.val.clusterDim.y = 1;
    cluster_shape.val.clusterDim.z = 1;
    cudaLaunchConfig_t config{};
    config.gridDim = dim3(static_cast<unsigned>(ranks));
    config.blockDim = dim3(kThreads);
    config.dynamicSmemBytes = shared_bytes;
    config.stream = stream;
    config.attrs = &cluster_shape;
    config.numAttrs = 1;
    int clusters = 0;  // as many as are resident at once, at most one per stage
    if ((status = cudaOccupancyMaxActiveClusters(&clusters, kernel, &config)) != cudaSuccess)
      return status;
    if (clusters < 1) return cudaErrorInvalidConfiguration;
    const int64_t stages = Layout::Stage::count(args.layer.G);
    if (clusters > stages) clusters = static_cast<int>(stages);
    config.gridDim = dim3(static_cast<unsigned>(clusters * ranks));
    return cudaLaunchKernelEx(&config, kernel, args, stages);
  });
}

}  // namespace haste::cuda
