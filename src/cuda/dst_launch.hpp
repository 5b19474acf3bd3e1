// What the GPU output layer (output_layer_gpu.cpp) hands to the device-side DST choice
// (dst_kernels.cu). Plain C++ for g++ and nvcc; the launchers return cudaError_t.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace haste::cuda {

// The device choice keeps per-thread arrays of a group's slots and candidate features.
constexpr int kMaxDstFanIn = 128;
constexpr int kMaxDstFeatures = 1024;

// One GPU's tail (the whole tail: no other ranks), rewired in place as
// haste::rewire_tail_indices with random regrowth would: indices [G, k] (sorted rows), their
// slot scores [G, k] (haste::dst_slot_scores' values), source [G, k] written.
struct DstDeviceArgs {
  int64_t G = 0;
  int k = 0, d = 0;    // k <= kMaxDstFanIn, d <= kMaxDstFeatures
  bool global = true;  // the prune rule: global threshold, else round(fraction * k) per group
  bool has_threshold = false;  // set by the launcher
  double fraction = 0;
  uint64_t seed = 0;
  const double* scores = nullptr;
  int32_t* indices = nullptr;
  int32_t* source = nullptr;
};

// Device scratch of the global rule's sort (G * k slots): sorted scores, slot ids before and
// after, cub's temporary storage (dst_sort_temp_bytes), and the changed-slot counter.
struct DstScratch {
  double* keys_out = nullptr;
  int64_t* slots_in = nullptr;
  int64_t* slots_out = nullptr;
  void* temp = nullptr;
  size_t temp_bytes = 0;
  unsigned long long* changed = nullptr;
};
size_t dst_sort_temp_bytes(int64_t slots);

// Rewires the tail and returns the number of changed slots in *changed_slots (synchronises
// `stream`).
cudaError_t launch_dst_rewire_random(const DstDeviceArgs& args, DstScratch& scratch,
                                     int64_t* changed_slots, cudaStream_t stream);

}  // namespace haste::cuda
