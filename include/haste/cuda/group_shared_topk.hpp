// Fused top-k inference on the GPU (DESIGN.md 4, issue 5 item 4): the k best labels of each
// batch row over a whole output layer (dense head + group-shared tail), without writing the
// B x L_tail tail logits to memory.
//
// Label ids: model ids are head labels 0..H-1, then tail slot s as H + s (slots from
// `tail_labels` on are the padding of the last group: never ranked). `label_map` turns a model
// id into the user's (original) label id, as labels.model_to_original in include/haste/model.hpp.
//
// How (src/cuda/gsff_topk.cu): the tail kernel computes each group's logits on the tensor cores
// as the forward does and keeps, per batch row and thread block, a candidate list with a
// threshold (the block's current k-th best), so nearly every logit is rejected by one compare;
// the head's logits (materialised by the caller, e.g. cuBLAS [B, H], as they are small) are cut
// per row chunk the same way; a merge kernel picks each row's k best of all lists. The lists'
// workspace grows with the resident thread blocks and H, never with L_tail (workspace_bytes()).
//
// Ties rank the lower model id first (as haste::Model::predict). A NaN logit ranks above +inf,
// so a diverged model shows up as NaN scores. Rows with fewer than k real labels end with
// label -1 and score -inf.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <haste/cuda/device_buffer.hpp>
#include <haste/cuda/group_shared_cuda.hpp>

namespace haste::cuda {

// The largest k TopKGpu takes.
inline constexpr int kMaxTopK = 128;

// What one batch ranks. Every pointer is a device pointer.
struct TopKInputs {
  int64_t B = 0;  // batch rows, any B >= 1

  // Dense head (H = 0: none): logits [B, H] bf16, row-major with row stride head_ld >= H,
  // computed by the caller without the bias; head_bias [H] fp32 is added when not null.
  int64_t H = 0;
  const bf16* head_logits = nullptr;
  int64_t head_ld = 0;
  const float* head_bias = nullptr;

  // Group-shared tail (tail.shape.G = 0 or tail_labels = 0: none), layouts as in
  // group_shared_cuda.hpp: hT [d, B] bf16 (the tail's features; with private features the
  // first d_tail rows of the model's hT). g in {8, 16, 32, 64}, k in {32, 64, 128}, d <= 1024.
  GroupSharedDevice tail;
  int64_t tail_labels = 0;  // real slots 0..tail_labels-1, <= G * g
  const bf16* hT = nullptr;

  // [H + tail_labels] model id -> original label id, or null to return model ids.
  const int32_t* label_map = nullptr;
};

// Throws haste::Error (naming the value and what is accepted) unless TopKGpu takes `inputs`
// with this k. Host-only: touches no device memory.
void check_topk_inputs(const TopKInputs& inputs, int k);

class TopKGpu {
 public:
  // k in [1, kMaxTopK]; throws haste::Error otherwise. Allocates nothing yet.
  explicit TopKGpu(int k);

  int k() const { return k_; }

  // scores [B, k] fp32 and labels [B, k] int32 (device), each row best first: overwritten.
  // Asynchronous on `stream`; the workspace grows (cudaMalloc) on the first call of a larger
  // problem. One call at a time per object: calls on different streams share the workspace.
  void run(const TopKInputs& inputs, float* scores, int32_t* labels, cudaStream_t stream);

  // Device bytes held now (candidate lists: (thread blocks of the tail kernel + head chunks of
  // 8192 labels) x B rounded up to 64 x (k + 256) x 8 bytes).
  size_t workspace_bytes() const { return workspace_.size() * sizeof(uint64_t); }

 private:
  int k_;
  DeviceBuffer<uint64_t> workspace_;
};

}  // namespace haste::cuda
