// What the host side of fused top-k (group_shared_topk.cpp) hands to its kernels
// (gsff_topk.cu). Plain C++ so that both g++ and nvcc read it.
//
// Candidates are 64-bit keys, (order-preserving bits of the fp32 score) << 32 | ~(model id),
// so one unsigned compare ranks by score, then by the lower id; 0 is never a real key and marks
// an empty entry. The workspace holds lists [list][row_stride][capacity] of keys: the tail
// kernel's thread blocks (list = the block's range of groups) and the head's column chunks
// (list = first_list + chunk). After the kernels, entries 0..k-1 of every (list, row < B) hold
// that list's k best keys (unordered, 0-padded); the merge kernel reads only those.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/group_shared_launch.hpp"

namespace haste::cuda {

// Entries a list holds beyond its k kept keys: room for the candidates of a few stages
// between two selections. kMaxTopK + this must stay within kSelectCapacity.
constexpr int kCandidateSlack = 256;
// Keys one warp selects from at once (12 per lane, in registers).
constexpr int kSelectCapacity = 384;
// Batch rows of one tail thread block: the row stride of the lists is B rounded up to this.
constexpr int kTopKBatchTile = 64;
// Head columns one warp cuts to its k best.
constexpr int64_t kHeadChunk = 8192;

struct TopKLists {
  uint64_t* keys = nullptr;
  int k = 0;
  int capacity = 0;        // k + kCandidateSlack
  int64_t row_stride = 0;  // B rounded up to kTopKBatchTile
};

struct TopKTailArgs {
  GroupSharedArgs layer;  // B, d, G, g, k (fan-in), indices, weights, bias, hT
  int64_t tail_labels = 0;
  int32_t first_label = 0;    // model id of slot 0 (= H)
  bool aligned_rows = false;  // rows of hT start on 16 bytes (cp.async)
  TopKLists lists;
};

struct TopKHeadArgs {
  int64_t B = 0, H = 0, ld = 0;
  const bf16* logits = nullptr;
  const float* bias = nullptr;
  bool aligned_rows = false;  // rows of logits start on 8 bytes (4-value loads)
  int first_list = 0;
  TopKLists lists;
};

struct TopKMergeArgs {
  int64_t B = 0;
  int list_count = 0;
  TopKLists lists;
  const int32_t* label_map = nullptr;
  float* scores = nullptr;
  int32_t* labels = nullptr;
};

// Grid of the tail kernel for this layer and batch: batch_tiles x ranges thread blocks.
cudaError_t plan_gsff_topk(const GroupSharedArgs& layer, int& batch_tiles, int& ranges);
cudaError_t launch_gsff_topk(const TopKTailArgs& args, int batch_tiles, int ranges,
                             cudaStream_t stream);
// ceil(H / kHeadChunk) lists.
cudaError_t launch_head_topk(const TopKHeadArgs& args, cudaStream_t stream);
cudaError_t launch_topk_merge(const TopKMergeArgs& args, cudaStream_t stream);

}  // namespace haste::cuda
