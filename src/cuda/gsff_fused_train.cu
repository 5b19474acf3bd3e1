// Fused group-shared training pass: logits, BCE-with-logits loss, dZ, dW, dbias and dh in one
// sweep over the label groups; the B x L logits and dZ never leave the chip.
//
// Tiling: a thread-block cluster of up to 8 blocks covers up to 256 batch rows, 32 per block,
// and a range of stages (groups of up to 8192 weights each). Every block keeps its slice of hT
// ([d, 32] bf16) and of the dh accumulator ([d, 32] fp32) in shared memory for the whole run,
// as the forward and backward-to-inputs kernels do, and streams the stage's weights through a
// cp.async pipeline. Per stage:
//   1. the last warp zeroes the [32, labels] dZ tile and its lane r places row r's positive
//      targets of the stage (each row walks its sorted CSR row once over the whole run),
//      during the previous stage's step 4;
//   2. all warps compute the logits tile (mma), add the bias, and turn it into the loss and
//      dZ = (sigmoid(z) - y) / B in registers; dZ replaces the targets in the tile, as bf16;
//   3. warps 0-7 add dHg = dZg Wg into the dh accumulator (an 8-column batch slice and half of
//      each group's slots per warp, the two halves of a slice kept a group apart, so no two
//      warps touch one element at once), while warps 8-15 compute this block's partial
//      dWg^T = Hg^T dZg (K = its 32 rows) and the dbias column sums into shared memory;
//   4. after a cluster barrier, block r of the cluster sums slice r of every block's partials
//      through distributed shared memory and writes dW (bf16) and dbias once.
// Two cluster barriers per stage: "partials complete" before step 4 and "partials read"
// (split arrive / wait, the wait deferred to the next stage's step 3).
#include <cooperative_groups.h>

#include <climits>
#include <type_traits>

#include "cuda/gsff_products.cuh"
#include "cuda/gsff_tiling.cuh"

namespace haste::cuda {
namespace {

namespace cg = cooperative_groups;

constexpr int kRows = 32;  // batch rows of one block
// 16 warps: with one block per multiprocessor, every phase of a stage is latency-bound, so
// twice the warps of v2 each issue half the instructions and hide each other's latency (v3).
constexpr int kWarps = 16;
constexpr int kThreads = kWarps * kWarpSize;
// Warps 0-7 add dh: warp w owns batch n-tile w % 4 and half w / 4 of every group's slots;
// warps 8-15 compute the dW partials.
constexpr int kBatchNTiles = kRows / 8;
constexpr int kInputWarps = 2 * kBatchNTiles;

// Synchronises the two dh warps of batch n-tile `n_tile` (named barriers 1-4; 0 is
// __syncthreads).
__device__ inline void sync_input_pair(int n_tile) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(1 + n_tile), "n"(2 * kWarpSize) : "memory");
}
constexpr int kMaxRanks = kFusedTrainRows / kRows;
static_assert(kFusedTrainRows % kRows == 0 && kMaxRanks <= 8,
              "a cluster holds at most 8 blocks (the portable cluster size)");

// Dynamic shared memory: stage buffers, the dZ tile (which first holds the stage's targets),
// the dW / dbias partials, then the d-sized hT slice and dh accumulator.
template <int kG, int kK, int kStageWeights>
struct FusedLayout {
  using Stage = GroupStage<kG, kK, kStageWeights>;
  static constexpr int kDepth = Stage::kWeightBytes > 8192 ? 2 : 3;
  static constexpr size_t kDz = kDepth * Stage::kBufferBytes;
  static constexpr size_t kPartials = kDz + kRows * Stage::kLabels * 2;
  static constexpr size_t kHTile = kPartials + (Stage::kLabels * kK + Stage::kLabels) * 4;
  __host__ __device__ static constexpr size_t accumulator(int64_t d) {
    return kHTile + d * kRows * 2;
  }
  __host__ __device__ static constexpr size_t bytes(int64_t d) {
    return accumulator(d) + d * kRows * 4;
  }
};

// The largest stage whose layout fits in the H100's 227 KB of shared memory per block at
// d = 768: every stage costs a fixed chain of block and cluster barriers, so fewer, larger
// stages spend less time waiting per weight (fused v3: 8192 weights where they fit).
constexpr int64_t kLargestFusedD = 768;
constexpr size_t kSharedBytesPerBlock = 227 * 1024;
template <int kG, int kK>
using FusedLayoutOf =
    std::conditional_t<FusedLayout<kG, kK, 8192>::bytes(kLargestFusedD) <= kSharedBytesPerBlock,
                       FusedLayout<kG, kK, 8192>, FusedLayout<kG, kK, 4096>>;

// The dW partials are [labels][kK] fp32 with each row's 4-slot quads XOR-swizzled by the
// label: with the plain stride kK, the 4 labels of one fragment store all hit one bank (ncu:
// 40% of shared-memory wavefronts were conflicts); quads stay whole for the float4 reduction.
template <int kK>
__device__ inline int partial_quad(int label, int quad) {
  static_assert(kK / 4 >= 8, "the swizzle flips the low 3 bits of the quad");
  return label * (kK / 4) + (quad ^ (label & 7));
}
template <int kK>
__device__ inline int partial_index(int label, int slot) {
  return partial_quad<kK>(label, slot / 4) * 4 + slot % 4;
}

// Publishes this block's shared-memory writes (the partials) to the cluster.
__device__ inline void cluster_arrive() {
  asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory");
}
// Only says "done reading the other blocks' partials": those loads have returned (their sums
// are stored before this), so nothing needs publishing. A release here waited for the
// stage's dW stores to reach L2 (ncu: 17% of stalls on its membar, fused v3).
__device__ inline void cluster_arrive_after_reads() {
  asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory");
}
__device__ inline void cluster_wait() {
  asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}

// log(1 + exp(z)) and sigmoid(z) - y without overflow; for y = 1 the latter is -sigmoid(-z),
// which keeps its precision where sigmoid(z) rounds to 1 (as on the CPU). Each is a few
// multi-function-unit instructions (exp2, log2, fast division): the loss is computed for every
// one of the B x L logits, so accurate libm calls here made the kernel issue-bound (v1).
__device__ inline float softplus(float z) {
  return fmaxf(z, 0.f) + __logf(1.f + __expf(-fabsf(z)));
}
__device__ inline float sigmoid(float z) {
  const float e = __expf(-fabsf(z));  // in (0, 1]: no overflow
  return __fdividef(z >= 0 ? 1.f : e, 1.f + e);
}
__device__ inline float sigmoid_minus(float z, float y) {
  return y == 1.f ? -sigmoid(-z) : sigmoid(z) - y;
}

// Walks one batch row's sorted CSR targets over consecutive stages: place() writes the
// targets of a stage into the row's line of the target tile and moves past them.
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
  // Targets of tail labels [label0, label_end) go to tile (row, label - label0).
  template <typename Tile>
  __device__ void place(int64_t label0, int64_t label_end, const Tile& tile, int row) {
    const int64_t column0 = targets->range.first + label0;
    while (next_column < targets->range.first + label_end) {
      const float value = targets->values ? targets->values[position] : 1.f;
      const int label = static_cast<int>(next_column - column0);
      tile.chunk_pointer(row, label / 8)[label % 8] = __float2bfloat16(value);
      advance_to(position + 1);
    }
  }
};

template <int kG, int kK>
__global__ void __launch_bounds__(kThreads, 1)
    gsff_fused_train_kernel(FusedTrainArgs f, int64_t stages) {
  using Layout = FusedLayoutOf<kG, kK>;
  using Stage = typename Layout::Stage;
  using Item = LogitItem<Stage::kGroups, kG, kRows / 16, kWarps>;
  using LabelTile = SwizzledTile<Stage::kLabelChunks>;  // [32 batch rows][stage labels]
  constexpr int kLabels = Stage::kLabels;
  const GroupSharedArgs& a = f.layer;
  const cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const int ranks = static_cast<int>(cluster.num_blocks());

  extern __shared__ __align__(128) uint8_t shared[];
  auto buffer_at = [&](int buffer) { return shared + buffer * Stage::kBufferBytes; };
  // [32 rows][kLabels]: targets, then each element's dZ in place of its target; zero between.
  const LabelTile dz_tile{reinterpret_cast<bf16*>(shared + Layout::kDz)};
  float* partial_weights = reinterpret_cast<float*>(shared + Layout::kPartials);  // [kLabels][kK]
  float* partial_bias = partial_weights + kLabels * kK;                           // [kLabels]
  const SwizzledTile<kRows / 8> h_tile{reinterpret_cast<bf16*>(shared + Layout::kHTile)};
  const FeatureAccumulator<kRows> accumulator{
      reinterpret_cast<float*>(shared + Layout::accumulator(a.d))};

  const int64_t b0 = f.batch_begin + rank * kRows;
  const int rows = f.batch_rows - rank * kRows < kRows ? f.batch_rows - rank * kRows : kRows;
  const int clusters = gridDim.x / ranks, cluster_index = blockIdx.x / ranks;
  const int64_t stage_begin = stages * cluster_index / clusters;
  const int64_t stage_end = stages * (cluster_index + 1) / clusters;

  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  // The last warp prepares each stage's target tile while the others reduce the previous
  // stage (with 8 blocks it has no dW slice there): it zeroes the tile, then lane r places
  // row r's targets. The pipeline's barrier publishes the tile before the logits read it.
  constexpr int kTargetWarp = kWarps - 1;
  TargetCursor cursor = warp == kTargetWarp && lane < rows
                            ? TargetCursor(f.targets, b0 + lane, stage_begin * kLabels)
                            : TargetCursor{};
  auto prepare_targets = [&](int64_t stage) {
    uint4* tile = reinterpret_cast<uint4*>(dz_tile.base);
    for (int i = lane; i < kRows * Stage::kLabelChunks; i += kWarpSize)
      tile[i] = make_uint4(0, 0, 0, 0);
    __syncwarp();
    if (lane < rows && stage < stage_end) {
      const int64_t label0 = stage * kLabels;
      cursor.place(label0, label0 + Stage::groups_in(stage, a.G) * kG, dz_tile, lane);
    }
  };
  if (warp == kTargetWarp) prepare_targets(stage_begin);
  accumulator.zero(a.d);
  load_rows_async(h_tile, static_cast<int>(a.d), rows / 8,
                  [&](int feature) { return a.hT + feature * a.B + b0; });
  cluster_arrive_after_reads();  // pairs with the first stage's "partials read" wait

  const int matrix = lane / 8, row = lane % 8;
  float loss = 0.f;  // this thread's share, before the 1 / B

  // Step 2 for one logits fragment pair: (row, label) and (row, label + 1) of the stage, whose
  // first `real_labels` labels are real (the rest pad the last group). The pair's targets sit
  // where its dZ goes, and only this thread touches them.
  auto loss_and_gradient = [&](int tile_row, int label, int real_labels, float z0, float z1) {
    uint32_t* pair =
        reinterpret_cast<uint32_t*>(dz_tile.chunk_pointer(tile_row, label / 8) + label % 8);
    const float2 y = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(pair));
    float dz[2] = {0.f, 0.f};
    const float z[2] = {z0, z1}, targets[2] = {y.x, y.y};
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      if (label + e < real_labels) {
        loss += softplus(z[e]) - z[e] * targets[e];
        dz[e] = sigmoid_minus(z[e], targets[e]) * f.inv_batch;
      }
    }
    *pair = pack_bf16x2(dz[0], dz[1]);
  };

  auto load = [&](int64_t stage, int buffer) { Stage::load(buffer_at(buffer), stage, a); };
  auto compute = [&](int64_t stage, int buffer) {
    const auto weights = Stage::weights_in(buffer_at(buffer));
    const int32_t* indices = Stage::indices_in(buffer_at(buffer));
    const int groups = Stage::groups_in(stage, a.G);
    const int labels = groups * kG;
    const int64_t labels_left = f.targets.range.count - stage * kLabels;
    const int real_labels = static_cast<int>(labels_left < 0        ? 0
                                             : labels_left < labels ? labels_left
                                                                    : labels);

    for (int index = warp; index < Item::kCount; index += kWarps) {
      const Item item(index);
      if (item.group >= groups || item.m_tile * 16 >= rows) continue;
      auto label_of = [&](int n) {
        return item.group * kG + (item.first_n_tile + n) * 8 + 2 * (lane % 4);
      };
      float2 bias[Item::kNTilesPerItem];  // loaded first: its latency overlaps the mma
#pragma unroll
      for (int n = 0; n < Item::kNTilesPerItem; ++n)
        bias[n] = *reinterpret_cast<const float2*>(a.bias + stage * kLabels + label_of(n));
      FragC acc[Item::kNTilesPerItem];
      group_logits<kK>(acc, h_tile, weights, indices + item.group * kK, item.group * kG,
                       item.m_tile, item.first_n_tile, lane);
#pragma unroll
      for (int n = 0; n < Item::kNTilesPerItem; ++n) {
        const int label = label_of(n), tile_row = item.m_tile * 16 + lane / 4;
        const float2 b = bias[n];
        loss_and_gradient(tile_row, label, real_labels, acc[n].r[0] + b.x, acc[n].r[1] + b.y);
        loss_and_gradient(tile_row + 8, label, real_labels, acc[n].r[2] + b.x, acc[n].r[3] + b.y);
      }
    }
    __syncthreads();
    cluster_wait();  // every block has read the previous stage's partials

    if (warp < kInputWarps) {
      // Two groups may share features, so the pair's adds of group i all come after both
      // warps' adds of group i - 1 (one pair barrier per group); within a group the halves
      // touch distinct features.
      constexpr int kSlotTilesPerWarp = kK / 16 / 2;
      const int n_tile = warp % kBatchNTiles;
      const int first_m_tile = warp / kBatchNTiles * kSlotTilesPerWarp;
      if (n_tile * 8 < rows) {
        for (int group = 0; group < groups; ++group) {
          FragC tiles[kSlotTilesPerWarp];  // all before the adds: independent mma chains
#pragma unroll
          for (int t = 0; t < kSlotTilesPerWarp; ++t)
            tiles[t] = group_input_gradient<kG>(weights, dz_tile, group * kG, first_m_tile + t,
                                                n_tile, lane);
          sync_input_pair(n_tile);
          accumulator.add(tiles, indices + group * kK, first_m_tile, n_tile, lane);
        }
      }
    } else {
      // Partial dWg^T of this block's rows for (group, 16 slots) items, spread over 8 warps.
      // An item covers all of the group's label n-tiles, so the gathered Hg^T fragment is
      // loaded once per k-step; slot tile 0 also sums the dbias columns, as ones^T dZg.
      constexpr int kNTiles = kG / 8, kSlotTiles = kK / 16;
      constexpr uint32_t kOnesPair = 0x3f803f80u;  // two bf16 1.0
      const FragA ones{{kOnesPair, kOnesPair, kOnesPair, kOnesPair}};
      for (int item = warp - kInputWarps; item < Stage::kGroups * kSlotTiles;
           item += kWarps - kInputWarps) {
        const int group = item / kSlotTiles, m_tile = item % kSlotTiles;
        if (group >= groups) break;
        FragC acc[kNTiles], bias_acc[kNTiles];
#pragma unroll
        for (int ks = 0; ks < kRows / 16; ++ks) {
          if (ks * 16 >= rows) break;
          // A = Hg^T: slot rows (features of h_tile), batch contiguous.
          const int feature = indices[group * kK + m_tile * 16 + row + 8 * (matrix % 2)];
          FragA frag_a;
          load_matrix_x4(frag_a.r, h_tile.chunk_address(feature, ks * 2 + matrix / 2));
#pragma unroll
          for (int n = 0; n < kNTiles; ++n) {
            // B = dZg: batch x labels, stored as batch rows (transposed for the fragment).
            FragB frag_b;
            load_matrix_x2_trans(
                frag_b.r[0], frag_b.r[1],
                dz_tile.chunk_address(ks * 16 + row + 8 * (matrix % 2), group * kG / 8 + n));
            mma(acc[n], frag_a, frag_b);
            if (m_tile == 0) mma(bias_acc[n], ones, frag_b);
          }
        }
        const int slot = m_tile * 16 + lane / 4;
#pragma unroll
        for (int n = 0; n < kNTiles; ++n) {
          const int label = group * kG + n * 8 + 2 * (lane % 4);
          partial_weights[partial_index<kK>(label, slot)] = acc[n].r[0];
          partial_weights[partial_index<kK>(label + 1, slot)] = acc[n].r[1];
          partial_weights[partial_index<kK>(label, slot + 8)] = acc[n].r[2];
          partial_weights[partial_index<kK>(label + 1, slot + 8)] = acc[n].r[3];
          if (m_tile == 0 && lane < 4) {  // every row of the ones product is the column sum
            partial_bias[label] = bias_acc[n].r[0];
            partial_bias[label + 1] = bias_acc[n].r[1];
          }
        }
      }
    }
    cluster_arrive();
    cluster_wait();                                       // every block's partials are complete
    if (warp == kTargetWarp) prepare_targets(stage + 1);  // every warp is done with dZ

    // This block's slice of the stage's dW (4 values at a time) and dbias: sums over ranks.
    const int64_t first_label = stage * kLabels;
    const int quads = labels * kK / 4;
    for (int q = quads * rank / ranks + threadIdx.x; q < quads * (rank + 1) / ranks;
         q += kThreads) {
      float4 parts[kMaxRanks];  // all remote loads in flight at once
#pragma unroll
      for (int r = 0; r < kMaxRanks; ++r) {
        if (r < ranks)
          parts[r] = reinterpret_cast<const float4*>(cluster.map_shared_rank(
              partial_weights,
              static_cast<unsigned>(r)))[partial_quad<kK>(q / (kK / 4), q % (kK / 4))];
      }
      float4 sum = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
      for (int r = 0; r < kMaxRanks; ++r) {
        if (r < ranks)
          sum = make_float4(sum.x + parts[r].x, sum.y + parts[r].y, sum.z + parts[r].z,
                            sum.w + parts[r].w);
      }
      uint2* out = reinterpret_cast<uint2*>(a.dweights + first_label * kK) + q;
      if (f.accumulate) {
        const uint2 old = *out;
        const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&old.x));
        const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&old.y));
        sum = make_float4(sum.x + lo.x, sum.y + lo.y, sum.z + hi.x, sum.w + hi.y);
      }
      *out = make_uint2(pack_bf16x2(sum.x, sum.y), pack_bf16x2(sum.z, sum.w));
    }
    // dbias on the upper half of the block, idle in the dW loop above when it has 8 blocks.
    for (int l = labels * rank / ranks + (threadIdx.x + kThreads / 2) % kThreads;
         l < labels * (rank + 1) / ranks; l += kThreads) {
      float parts[kMaxRanks];
#pragma unroll
      for (int r = 0; r < kMaxRanks; ++r)
        parts[r] =
            r < ranks ? cluster.map_shared_rank(partial_bias, static_cast<unsigned>(r))[l] : 0.f;
      float sum = f.accumulate ? a.dbias[first_label + l] : 0.f;
#pragma unroll
      for (int r = 0; r < kMaxRanks; ++r) sum += parts[r];
      a.dbias[first_label + l] = sum;
    }
    cluster_arrive_after_reads();
  };
  run_pipeline<Layout::kDepth>(stage_begin, stage_end, load, compute);
  cluster_wait();  // no block leaves while another may still read its partials

  accumulator.add_to(a.dhT, a.B, b0, a.d, rows);
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    loss += __shfl_xor_sync(0xffffffffu, loss, offset);
  if (lane == 0) atomicAdd(f.loss, static_cast<double>(loss) * f.inv_batch);
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
