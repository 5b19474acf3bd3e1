// Host side of fused top-k: checks the inputs, sizes the candidate lists' workspace, and runs
// the tail kernel, the head kernel and the merge on one stream (src/cuda/gsff_topk.cu).
#include <cstdint>
#include <haste/cuda/cuda_check.hpp>
#include <haste/cuda/group_shared_topk.hpp>
#include <haste/error.hpp>
#include <limits>

#include "cuda/topk_launch.hpp"

namespace haste::cuda {
namespace {

static_assert(kMaxTopK + kCandidateSlack <= kSelectCapacity, "a list must fit one selection");

bool has_tail(const TopKInputs& in) { return in.tail.shape.G > 0 && in.tail_labels > 0; }

bool aligned(const void* pointer, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(pointer) % bytes == 0;
}

}  // namespace

void check_topk_inputs(const TopKInputs& in, int k) {
  check(k >= 1 && k <= kMaxTopK, "top-k: k = {} must be in [1, {}]", k, kMaxTopK);
  check(in.B >= 1, "top-k: batch size B = {} must be at least 1", in.B);
  check(in.H >= 0 && in.tail_labels >= 0, "top-k: H = {} and tail_labels = {} must be >= 0", in.H,
        in.tail_labels);
  check(in.H + in.tail_labels >= 1, "top-k: nothing to rank (H = 0 and no tail labels)");
  check(in.H + in.tail_labels <= std::numeric_limits<int32_t>::max(),
        "top-k: H + tail_labels = {} does not fit int32 label ids", in.H + in.tail_labels);
  if (in.H > 0) {
    check(in.head_logits != nullptr, "top-k: H = {} head labels but head_logits is null", in.H);
    check(in.head_ld >= in.H, "top-k: head_ld = {} is smaller than H = {}", in.head_ld, in.H);
  }
  if (in.tail_labels > 0) {
    const GroupSharedShape& shape = in.tail.shape;
    check(shape.g == 8 || shape.g == 16 || shape.g == 32 || shape.g == 64,
          "top-k: g = {} labels per group is not supported; the fused tail kernel takes g in "
          "{{8, 16, 32, 64}} (for g = 1, standard fixed fan-in, compute the logits with "
          "group_shared_forward and rank them as head logits)",
          shape.g);
    check_supported(shape, 16);  // k and d; this kernel takes any B
    check(in.tail_labels <= shape.labels(),
          "top-k: tail_labels = {} is more than the tail's G * g = {} slots", in.tail_labels,
          shape.labels());
    check(in.hT != nullptr && in.tail.indices != nullptr && in.tail.weights != nullptr &&
              in.tail.bias != nullptr,
          "top-k: a tail of {} labels needs hT, indices, weights and bias (one is null)",
          in.tail_labels);
  }
}

TopKGpu::TopKGpu(int k) : k_(k) {
  check(k >= 1 && k <= kMaxTopK, "top-k: k = {} must be in [1, {}]", k, kMaxTopK);
}

void TopKGpu::run(const TopKInputs& in, float* scores, int32_t* labels, cudaStream_t stream) {
  check_topk_inputs(in, k_);
  check(scores != nullptr && labels != nullptr, "top-k: scores and labels must not be null");

  GroupSharedArgs layer;
  layer.B = in.B;
  layer.d = in.tail.shape.d;
  layer.G = in.tail.shape.G;
  layer.g = in.tail.shape.g;
  layer.k = in.tail.shape.k;
  layer.indices = in.tail.indices;
  layer.weights = in.tail.weights;
  layer.bias = in.tail.bias;
  layer.hT = in.hT;
  int batch_tiles = 0, ranges = 0;
  if (has_tail(in)) HASTE_CUDA_CHECK(plan_gsff_topk(layer, batch_tiles, ranges));
  const int64_t chunks = (in.H + kHeadChunk - 1) / kHeadChunk;

  TopKLists lists;
  lists.k = k_;
  lists.capacity = k_ + kCandidateSlack;
  lists.row_stride = (in.B + kTopKBatchTile - 1) / kTopKBatchTile * kTopKBatchTile;
  const int64_t list_count = ranges + chunks;
  const auto needed = static_cast<size_t>(list_count * lists.row_stride * lists.capacity);
  if (workspace_.size() < needed) workspace_ = DeviceBuffer<uint64_t>(needed);
  lists.keys = workspace_.data();

  if (ranges > 0) {
    const TopKTailArgs tail{.layer = layer,
                            .tail_labels = in.tail_labels,
                            .first_label = static_cast<int32_t>(in.H),
                            .aligned_rows = in.B % 8 == 0 && aligned(in.hT, 16),
                            .lists = lists};
    HASTE_CUDA_CHECK(launch_gsff_topk(tail, batch_tiles, ranges, stream));
  }
  if (chunks > 0) {
    const TopKHeadArgs head{.B = in.B,
                            .H = in.H,
                            .ld = in.head_ld,
                            .logits = in.head_logits,
                            .bias = in.head_bias,
                            .aligned_rows = in.head_ld % 4 == 0 && aligned(in.head_logits, 8),
                            .first_list = ranges,
                            .lists = lists};
    HASTE_CUDA_CHECK(launch_head_topk(head, stream));
  }
  const TopKMergeArgs merge{.B = in.B,
                            .list_count = static_cast<int>(list_count),
                            .lists = lists,
                            .label_map = in.label_map,
                            .scores = scores,
                            .labels = labels};
  HASTE_CUDA_CHECK(launch_topk_merge(merge, stream));
}

}  // namespace haste::cuda
