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

// For the batch in hT: adds the tail's loss to *loss (a device double; the caller zeroes it),
// OVERWRITES dweights (bf16) and dbias (fp32) with the gradient, and ACCUMULATES the gradient
// of h into dhT, as group_shared_forward + bce_with_logits_tail + group_shared_backward_weights
// + group_shared_backward_inputs would. Needs g in {8, 16, 32, 64} (throws for g = 1) and
// enough shared memory for d (d <= 768 on the H100 at every (g, k)).
void group_shared_fused_train(const GroupSharedDevice& layer, int64_t B, const bf16* hT,
                              const TailTargetsDevice& targets, bf16* dweights, float* dbias,
                              float* dhT, double* loss, cudaStream_t stream);

}  // namespace haste::cuda
