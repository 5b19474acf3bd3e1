// What the GPU output layer (output_layer_gpu.cpp) hands to the device-side DST choice
// (dst_kernels.cu). Plain C++ for g++ and nvcc; the launchers return cudaError_t.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace haste::cuda {

// The device choice keeps per-thread arrays of a group's slots and candidate features.
constexpr int kMaxDstFanIn = 128;
constexpr int kMaxDstFeatures = 1024;

// The global prune rule's threshold: the key (score, slot) of the count-th lowest slot.
struct DstThreshold {
  bool exists = false;  // false: no slot to prune (count 0), or the per-group rule
  double score = 0;
  int64_t slot = 0;
};

// Device scratch of the threshold's sort over `slots` slots: sorted scores, slot ids before
// and after, and cub's temporary storage (dst_sort_temp_bytes).
struct DstSortScratch {
  double* keys_out = nullptr;
  int64_t* slots_in = nullptr;
  int64_t* slots_out = nullptr;
  void* temp = nullptr;
  size_t temp_bytes = 0;
};
size_t dst_sort_temp_bytes(int64_t slots);
// Finds the threshold of llround(fraction * slots) slots among `scores` [slots] (synchronises
// `stream`).
cudaError_t dst_global_threshold(const double* scores, int64_t slots, double fraction,
                                 const DstSortScratch& scratch, DstThreshold* threshold,
                                 cudaStream_t stream);

// Groups [first_group, first_group + groups) of one GPU's whole tail (no other ranks), rewired
// in place as haste::rewire_tail_indices would: indices [G, k] (sorted rows), their slot
// scores (haste::dst_slot_scores' values); source [G, k] written. `norms` null: random
// regrowth; else gradient regrowth from norms [groups, d], each group's gradient norm of every
// feature. The arrays are the whole tail's; changed_slots accumulates.
struct DstDeviceArgs {
  int64_t first_group = 0, groups = 0;  // into the arrays below
  // The arrays hold groups from this one of the whole tail on (a label shard's part): slot ids
  // and random streams are the whole tail's.
  int64_t part_first_group = 0;
  int k = 0, d = 0;    // k <= kMaxDstFanIn, d <= kMaxDstFeatures
  bool global = true;  // the prune rule: the threshold, else round(fraction * k) per group
  DstThreshold threshold;
  double fraction = 0;
  uint64_t seed = 0;
  const double* scores = nullptr;
  const double* norms = nullptr;
  int32_t* indices = nullptr;
  int32_t* source = nullptr;
  unsigned long long* changed_slots = nullptr;
};
cudaError_t launch_dst_rewire(const DstDeviceArgs& args, cudaStream_t stream);

// Gradient regrowth's inputs for a stretch of Lc tail labels: dz [B, Lc] fp32 = (sigmoid(z) -
// y) / B of z [B, Lc] bf16 (the forward's logits of those labels), 0 past the real labels;
// targets are the batch's CSR rows in model ids, the stretch's labels being first_id ..
// first_id + real - 1.
struct DstTailGradient {
  int64_t B = 0, labels = 0, real = 0, first_id = 0;
  const __nv_bfloat16* z = nullptr;
  const int64_t* indptr = nullptr;
  const int32_t* target_ids = nullptr;
  const float* target_values = nullptr;  // null: every target 1
  float* dz = nullptr;
};
cudaError_t launch_dst_tail_gradient(const DstTailGradient& args, cudaStream_t stream);

// norms [groups, d] (double) = sum over each group's g labels of product [groups * g, d]^2.
cudaError_t launch_dst_group_norms(const float* product, int64_t groups, int64_t g, int64_t d,
                                   double* norms, cudaStream_t stream);

// out [n] = in [n] as fp32.
cudaError_t launch_bf16_to_float(const __nv_bfloat16* in, int64_t n, float* out,
                                 cudaStream_t stream);

}  // namespace haste::cuda
