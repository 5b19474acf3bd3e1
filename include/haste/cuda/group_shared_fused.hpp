// Fused GPU kernels of the group-shared tail (issue 5 items 3 and 4): one pass over the label
// groups that never writes the B x L_tail logits to memory.
//
// Training: forward + BCE-with-logits (the loss of include/haste/tail_loss.hpp: summed over the
// real labels, mean over the batch, padding labels inert) + dZ + backward to weights + backward
// to inputs. The logits and dZ of a few groups live only in registers and shared memory.
// Same layouts as include/haste/cuda/group_shared_cuda.hpp (hT [d, B] bf16, dhT [d, B] fp32);
// the targets are the batch's CSR label rows on the device.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <haste/cuda/group_shared_cuda.hpp>
#include <haste/cuda/optimizer_update.hpp>
#include <haste/tail_loss.hpp>

namespace haste::cuda {

// A batch's targets on the device, as a CsrMatrix with B rows: columns strictly increasing
// within a row; `values` null for a pattern matrix (every target 1), else soft targets in
// [0, 1]. `range` maps target columns to tail labels.
struct TailTargetsDevice {
  const int64_t* indptr = nullptr;   // [B + 1]
  const int32_t* indices = nullptr;  // [nnz]
  const float* values = nullptr;     // [nnz] or null
  TailLabelRange range;
};

// Batch rows of one launch of the fused training kernel (one thread-block cluster); larger
// batches run as several launches that add to the weight gradient.
constexpr int64_t kFusedTrainRows = 256;

// The optimizer step of the tail weights, applied by the fused kernel itself as each stage's
// weight gradient is complete: the gradient never goes through memory (no write, no read by an
// update kernel) and the update's memory traffic overlaps the kernel's compute. The result is
// the same as optimizer_update on the bf16 gradient the kernel would have written. Only for a
// batch of at most kFusedTrainRows rows (one launch sees the whole gradient).
struct FusedWeightUpdate {
  bf16* weights = nullptr;  // the layer's weights (layer.weights), updated in place
  InKernelUpdate optimizer;
};

// For the batch in hT: adds the tail's loss to *loss (a device double; the caller zeroes it),
// OVERWRITES dbias (fp32) with the bias gradient, ACCUMULATES the gradient of h into dhT, and
// either OVERWRITES dweights (bf16) with the weight gradient or, with `update`, applies the
// update to the weights instead (dweights then untouched and may be null), as
// group_shared_forward + bce_with_logits_tail + group_shared_backward_weights +
// group_shared_backward_inputs (+ optimizer_update) would. The weights the step reads are
// those before the update. Needs g in {8, 16, 32, 64} (throws for g = 1) and enough shared
// memory for d (d <= 768 on the H100 at every (g, k)).
// The batch has B rows (a multiple of 16), of which the first `rows` are real; the others pad
// it (h 0, no targets) and get no loss and no gradient: the loss is the mean over `rows`.
void group_shared_fused_train(const GroupSharedDevice& layer, int64_t B, int64_t rows,
                              const bf16* hT, const TailTargetsDevice& targets, bf16* dweights,
                              float* dbias, float* dhT, double* loss, cudaStream_t stream,
                              const FusedWeightUpdate* update = nullptr);

}  // namespace haste::cuda
