// The tail of the output layer on the CPU engine, one group at a time (DESIGN.md 3, 4): per
// group, gather Hg^T = rows idx[G] of h^T once (the batch is transposed first, so that each
// feature's B values are one contiguous row) and run the three products as small OpenBLAS GEMMs
// (runtime-dispatched AVX2/AVX-512 kernels) on it, with the loss and dZg computed in between,
// while the tile is still in cache:
//   Zg = Hg Wg^T + b  ->  loss, dZg = (sigmoid(Zg) - Yg) / B  ->  dWg = dZg^T Hg,
//   db = column sums of dZg,  dh[:, idx[G]] += dZg Wg.
// The portable kernels of include/haste/group_shared.hpp and tail_loss.hpp are the reference
// this is tested against (tests/model/tail_pass_test.cpp).
//
// Groups are spread over OpenMP threads with a static schedule. dh is shared by all groups, so
// each thread adds rows into its own copy of dh^T, and the copies are summed in thread order: the
// result depends on the thread count but not on timing.
#pragma once

#include <cstdint>
#include <haste/group_shared.hpp>
#include <haste/sparse.hpp>
#include <span>
#include <vector>

namespace haste::model {

// BCE with logits of a block of logits, in place: z [rows, cols] (row stride ldz) holds the
// products without their bias [cols], which is added here, and becomes
// dz = (sigmoid(z + bias) - y) * scale for columns < real_cols and 0 for the rest (padding),
// with y = 1 at the listed positives and 0 elsewhere. Returns the loss summed over the block.
// `positives` are (row, column) pairs inside the block, in any order, without duplicates.
struct BlockPositive {
  int32_t row;
  int32_t column;
};
double bce_block_in_place(float* z, int64_t rows, int64_t cols, int64_t ldz, int64_t real_cols,
                          const float* bias, std::span<const BlockPositive> positives, float scale);

class TailPass {
 public:
  // `tail` may be a stretch of a bigger tail's groups (a label shard's): every span below then
  // covers that stretch only.
  //
  // Logits of every tail slot: z [B, G*g] (padding slots included).
  static void logits(const GroupSharedView<float>& tail, int64_t B, std::span<const float> h,
                     std::span<float> z);

  // One training step of the tail: returns the loss (divided by B), overwrites dW and db,
  // ADDS the tail's share into dh [B, d_tail], and writes dz into the first G*g columns of each
  // row of dz [B, ldz] unless dz is empty (kept for DST's gradient-based regrowth; a shard
  // writes its columns of the whole tail's dz). `targets` has B rows in model label ids; tail
  // slot s is model label first_label + s, and slots from real_labels on are padding.
  double step(const GroupSharedView<float>& tail, int64_t B, std::span<const float> h,
              const CsrMatrix& targets, int64_t first_label, int64_t real_labels,
              std::span<float> dweights, std::span<float> dbias, std::span<float> dh,
              std::span<float> dz, int64_t ldz);

 private:
  // The batch's positives of every group, as (row, column within group), grouped by group.
  void collect_positives(const CsrMatrix& targets, int64_t first_label, int64_t real_labels,
                         int64_t g, int64_t G);

  std::vector<int64_t> group_offsets_;          // [G + 1] into positives_
  std::vector<BlockPositive> positives_;        // sorted by group
  std::vector<float> hT_;                       // the step's input, transposed: [d_tail, B]
  std::vector<std::vector<float>> thread_dhT_;  // one dh^T [d_tail, B] per thread
  std::vector<double> group_loss_;              // [G], summed in group order
};

}  // namespace haste::model
