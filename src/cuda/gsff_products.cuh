// The tensor-core pieces of one group that several kernels share (forward, backward to inputs,
// the fused training kernel and fused top-k): the gathered-row fragment of Hg read from a
// feature-major tile of h, the dHg^T tile of a group, and the scatter-add of that tile into a
// shared-memory dh accumulator.
#pragma once

#include "cuda/tile.cuh"

namespace haste::cuda {

// A = Hg rows m_tile*16 .. +15 x slots ks*16 .. +15 of one group, from h_tile ([d][batch tile],
// one row per feature). The 8x8 matrices are (rows 0-7 | 8-15) x (slots 0-7 | 8-15), stored
// transposed (feature rows of hT), so each lane names one feature row.
template <int kChunks>
__device__ inline FragA gathered_rows(const SwizzledTile<kChunks>& h_tile,
                                      const int32_t* group_indices, int ks, int m_tile, int lane) {
  const int matrix = lane / 8, row = lane % 8;
  const int feature = group_indices[ks * 16 + row + 8 * (matrix / 2)];
  FragA frag;
  load_matrix_x4_trans(frag.r, h_tile.chunk_address(feature, m_tile * 2 + matrix % 2));
  return frag;
}

// B = Wg^T for labels n_tile*8 .. +7 of the group starting at row `label0` of the weight tile
// (a multiple of 8, as every group boundary is), slots ks*16 .. +15.
template <int kChunks>
__device__ inline FragB weight_columns(const SwizzledTile<kChunks>& weights, int label0, int ks,
                                       int n_tile, int lane) {
  const int matrix = lane / 8, row = lane % 8;
  FragB frag;
  load_matrix_x2(frag.r[0], frag.r[1],
                 weights.chunk_address(label0, n_tile * 8 + row, ks * 2 + matrix % 2));
  return frag;
}

// B = Wg^T for the label n-tiles n_tile and n_tile + 1 with one ldmatrix.x4 (half the loads
// of two weight_columns calls).
template <int kChunks>
__device__ inline void weight_column_pair(FragB& first, FragB& second,
                                          const SwizzledTile<kChunks>& weights, int label0, int ks,
                                          int n_tile, int lane) {
  const int matrix = lane / 8, row = lane % 8;
  uint32_t r[4];
  load_matrix_x4(
      r, weights.chunk_address(label0, (n_tile + matrix / 2) * 8 + row, ks * 2 + matrix % 2));
  first = FragB{{r[0], r[1]}};
  second = FragB{{r[2], r[3]}};
}

// Work items for the logits of a stage of kGroups groups and kMTiles 16-row batch m-tiles:
// (group, kMTilesPerItem m-tiles, part of the label n-tiles), split finely enough that every
// warp gets one; a warp loads one A fragment per m-tile and k-step and reuses it over the
// item's n-tiles, and each B fragment over the item's m-tiles.
template <int kGroups, int kG, int kMTiles, int kWarps, int kMTilesPerItem = 1>
struct LogitItem {
  static constexpr int kNTiles = kG / 8;
  static constexpr int kMItems = kMTiles / kMTilesPerItem;
  static constexpr int kPairs = kGroups * kMItems;
  static constexpr int kSplit =
      kPairs >= kWarps ? 1 : (kWarps / kPairs < kNTiles ? kWarps / kPairs : kNTiles);
  static constexpr int kNTilesPerItem = kNTiles / kSplit;
  static constexpr int kCount = kPairs * kSplit;

  int group, m_tile, first_n_tile;  // m_tile: the item's first
  __device__ explicit LogitItem(int item)
      : group(item / kSplit / kMItems),
        m_tile(item / kSplit % kMItems * kMTilesPerItem),
        first_n_tile(item % kSplit * kNTilesPerItem) {}
};

// acc[m][n] = Hg Wg^T for batch rows (first_m_tile + m)*16 .. +15 and labels
// (first_n_tile + n)*8 .. +7 of the group whose label rows start at `label0` of the weight tile.
template <int kK, int kMTiles, int kNTiles, int kHChunks, int kWeightChunks>
__device__ inline void group_logits(FragC (&acc)[kMTiles][kNTiles],
                                    const SwizzledTile<kHChunks>& h_tile,
                                    const SwizzledTile<kWeightChunks>& weights,
                                    const int32_t* group_indices, int label0, int first_m_tile,
                                    int first_n_tile, int lane) {
#pragma unroll
  for (int ks = 0; ks < kK / 16; ++ks) {
    FragA frag_a[kMTiles];
#pragma unroll
    for (int m = 0; m < kMTiles; ++m)
      frag_a[m] = gathered_rows(h_tile, group_indices, ks, first_m_tile + m, lane);
    if constexpr (kNTiles % 2 == 0) {
#pragma unroll
      for (int n = 0; n < kNTiles; n += 2) {
        FragB first, second;
        weight_column_pair(first, second, weights, label0, ks, first_n_tile + n, lane);
#pragma unroll
        for (int m = 0; m < kMTiles; ++m) {
          mma(acc[m][n], frag_a[m], first);
          mma(acc[m][n + 1], frag_a[m], second);
        }
      }
    } else {
#pragma unroll
      for (int n = 0; n < kNTiles; ++n) {
        const FragB frag_b = weight_columns(weights, label0, ks, first_n_tile + n, lane);
#pragma unroll
        for (int m = 0; m < kMTiles; ++m) mma(acc[m][n], frag_a[m], frag_b);
      }
    }
  }
}
// The same for one m-tile.
template <int kK, int kNTiles, int kHChunks, int kWeightChunks>
__device__ inline void group_logits(FragC (&acc)[kNTiles], const SwizzledTile<kHChunks>& h_tile,
                                    const SwizzledTile<kWeightChunks>& weights,
                                    const int32_t* group_indices, int label0, int m_tile,
                                    int first_n_tile, int lane) {
  group_logits<kK>(reinterpret_cast<FragC(&)[1][kNTiles]>(acc), h_tile, weights, group_indices,
                   label0, m_tile, first_n_tile, lane);
}

// Writes C fragments of one 16-row m-tile (n-tiles 0 .. kNTiles - 1, rounded to bf16) into a
// tile of rows (z or dZ: [rows][labels]) at rows row0 .. + 15 and 16-byte label chunks
// first_chunk .. + kNTiles - 1, with stmatrix: an n-tile is two 8x8 matrices (rows 0-7 and
// 8-15). (Eight 32-bit stores and their addresses per n-tile pair before: bench/NOTES.md.)
template <int kNTiles, int kChunks>
__device__ inline void store_row_fragments(const SwizzledTile<kChunks>& tile,
                                           const FragC (&frags)[kNTiles], int row0, int first_chunk,
                                           int lane) {
  auto matrix_row = [&](int n) {  // this lane's row address in matrix lane / 8 from n-tile n
    const int matrix = lane / 8;
    return tile.chunk_address(row0 + matrix % 2 * 8 + lane % 8, first_chunk + n + matrix / 2);
  };
  auto packed = [&](int n, int half) {
    return pack_bf16x2(frags[n].r[2 * half], frags[n].r[2 * half + 1]);
  };
  if constexpr (kNTiles == 1) {
    store_matrix_x2(matrix_row(0), packed(0, 0), packed(0, 1));
  } else {
    static_assert(kNTiles % 2 == 0, "n-tiles are stored in pairs");
#pragma unroll
    for (int n = 0; n < kNTiles; n += 2)
      store_matrix_x4(matrix_row(n),
                      {packed(n, 0), packed(n, 1), packed(n + 1, 0), packed(n + 1, 1)});
  }
}

// dHg^T for slots (first_m_tile + t)*16 .. +15 (t < kTiles) and batch columns n_tile*8 .. +7:
// Wg^T dZg^T (M = slots, N = batch, K = the group's labels; g = 8 pads K with zeros), the
// dZg^T fragment loaded once per k-step for all kTiles. `weights` holds the group's label rows
// from `label0` (a multiple of 8); `dz` holds batch rows with the same labels from column
// `label0`.
template <int kG, int kTiles, int kWeightChunks, int kDzChunks>
__device__ inline void group_input_gradients(FragC (&acc)[kTiles],
                                             const SwizzledTile<kWeightChunks>& weights,
                                             const SwizzledTile<kDzChunks>& dz, int label0,
                                             int first_m_tile, int n_tile, int lane) {
  const int matrix = lane / 8, row = lane % 8;
#pragma unroll
  for (int ks = 0; ks < (kG + 15) / 16; ++ks) {
    const int label = label0 + ks * 16;
    FragB frag_b;             // B = dZg^T: labels x batch, stored as batch rows of dz
    if constexpr (kG == 8) {  // labels 8-15 do not exist: a2 = a3 = b1 = 0
      load_matrix_x1(frag_b.r[0], dz.chunk_address(n_tile * 8 + row, label / 8));
    } else {
      load_matrix_x2(frag_b.r[0], frag_b.r[1],
                     dz.chunk_address(n_tile * 8 + row, label / 8 + matrix % 2));
    }
#pragma unroll
    for (int t = 0; t < kTiles; ++t) {
      const int m_tile = first_m_tile + t;
      FragA frag_a;  // A = Wg^T: slots x labels, stored transposed (label rows of W)
      if constexpr (kG == 8) {
        load_matrix_x2_trans(frag_a.r[0], frag_a.r[1],
                             weights.chunk_address(label0, ks * 16 + row, m_tile * 2 + matrix % 2));
      } else {
        load_matrix_x4_trans(frag_a.r,
                             weights.chunk_address(label0, ks * 16 + row + 8 * (matrix / 2),
                                                   m_tile * 2 + matrix % 2));
      }
      mma(acc[t], frag_a, frag_b);
    }
  }
}

// The dh accumulator: [d][kColumns] fp32 in shared memory, one row per feature. Columns are
// rotated by the feature so that the 8 features one mma output row touches fall into
// different banks.
template <int kColumns>
struct FeatureAccumulator {
  static_assert(kColumns % 32 == 0, "the column rotation assumes rows of 32-value banks");
  float* base;

  // Block-wide; the caller synchronises before the first add.
  __device__ void zero(int64_t d) const {
    for (int i = threadIdx.x; i < d * kColumns; i += blockDim.x) base[i] = 0.f;
  }

  __device__ float& at(int feature, int column) const {
    return base[feature * kColumns + (column ^ ((feature & 3) << 3))];
  }
  // Adds kTiles group_input_gradients tiles of one group: tile t holds slots
  // (first_m_tile + t)*16 .. +15, i.e. the features group_indices[slot]. A group's features are
  // distinct, so within a group no two lanes touch the same element and every old value can be
  // read before the first write (the reads overlap); callers keep different groups' adds apart.
  template <int kTiles>
  __device__ void add(const FragC (&tiles)[kTiles], const int32_t* group_indices, int first_m_tile,
                      int n_tile, int lane) const {
    const int column = n_tile * 8 + 2 * (lane % 4);
    float2* pairs[kTiles][2];
    float2 old[kTiles][2];
#pragma unroll
    for (int t = 0; t < kTiles; ++t) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int slot = (first_m_tile + t) * 16 + lane / 4 + 8 * half;
        pairs[t][half] = reinterpret_cast<float2*>(&at(group_indices[slot], column));
        old[t][half] = *pairs[t][half];
      }
    }
#pragma unroll
    for (int t = 0; t < kTiles; ++t) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        *pairs[t][half] = make_float2(old[t][half].x + tiles[t].r[2 * half],
                                      old[t][half].y + tiles[t].r[2 * half + 1]);
      }
    }
  }
  // Block-wide, after a barrier: adds the first `rows` columns to dhT[:, b0 .. b0 + rows) (row
  // stride B) with global atomics, since other blocks hold the same features.
  __device__ void add_to(float* dhT, int64_t B, int64_t b0, int64_t d, int rows) const {
    for (int i = threadIdx.x; i < d * rows; i += blockDim.x) {
      const int feature = i / rows, column = i % rows;
      atomicAdd(dhT + feature * B + b0 + column, at(feature, column));
    }
  }
};

}  // namespace haste::cuda
