// Binary cross-entropy with logits for a block of tail labels, with sparse targets: the loss
// of DESIGN.md 2 (summed over labels, mean over the batch) and its gradient, written the way
// the fused GPU kernel computes it, so the two can be compared.
#pragma once

#include <haste/sparse.hpp>

#include <cstdint>
#include <span>

namespace haste {

// Which target columns the block's labels are. Block label l (column l of z) is target column
// `first + l` for l < `count`; the block's labels from `count` on are padding (the inert labels
// that fill the last group): they get no loss and a zero gradient. Target columns outside
// [first, first + count) belong to other blocks (the head, other shards) and are ignored.
struct TailLabelRange {
  int64_t first = 0;  // e.g. H when the targets use model label ids (head labels first)
  int64_t count = 0;  // real labels of the block, <= L_tail
};

// z and dz are [B, L_tail] row-major; `targets` has B rows (one per batch row), and is a
// pattern matrix (every stored target is 1) or has values in [0, 1] (soft targets).
// Returns the loss   (1 / B) * sum_{b, l < count} max(z, 0) - z * y + log1p(exp(-|z|))
// and overwrites dz = (sigmoid(z) - y) / B (0 in padding columns). The loss is accumulated in
// double for either T.
template <typename T>
double bce_with_logits_tail(int64_t B, int64_t L_tail, std::span<const T> z,
                            const CsrMatrix& targets, TailLabelRange range, std::span<T> dz);

}  // namespace haste
