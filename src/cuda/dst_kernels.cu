// DST's choice of slots and features on the device (dst_launch.hpp), for one GPU with random
// regrowth: the rules of src/model/dst.cpp, drawn from the same random streams, so the result
// equals haste::rewire_tail_indices bit for bit.
//
// The global rule's threshold is the key (score, slot) of the count-th lowest slot: a stable
// radix sort of the scores with the slot ids as values puts equal scores in slot order, as the
// host's (score, slot) comparison does. Then one thread per group chooses its pruned slots (its
// lowest keys, up to the cap), draws the new features by partial Fisher-Yates over the
// features not in the group (Rng(hash_key(seed, group)), as on the host) and writes the group's
// sorted indices and source slots.
#include <algorithm>
#include <cmath>
#include <cub/device/device_radix_sort.cuh>

#include "cuda/dst_launch.hpp"
#include "data/random.hpp"

namespace haste::cuda {
namespace {

constexpr int kThreads = 128;

struct SlotKeyDevice {
  double score;
  int64_t slot;
};
__device__ inline bool at_or_below(double score, int64_t slot, const SlotKeyDevice& threshold) {
  return score != threshold.score ? score < threshold.score : slot <= threshold.slot;
}

// Rng::below on the device: the high 64 bits of the 128-bit product.
__device__ inline uint64_t draw_below(uint64_t& state, uint64_t n) {
  state += 0x9e3779b97f4a7c15ULL;
  return __umul64hi(mix64(state), n);
}

__global__ void slot_ids_kernel(int64_t* ids, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    ids[i] = i;
}

__global__ void rewire_random_kernel(DstDeviceArgs a, SlotKeyDevice threshold,
                                     unsigned long long* changed) {
  const int64_t group = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (group >= a.G) return;
  const int k = a.k;
  const double* score = a.scores + group * k;
  int32_t* indices = a.indices + group * k;
  int32_t* source = a.source + group * k;

  int count = 0;
  if (a.global) {
    for (int j = 0; j < k && a.has_threshold; ++j)
      count += at_or_below(score[j], group * k + j, threshold) ? 1 : 0;
  } else {
    count = static_cast<int>(llround(a.fraction * k));
  }
  count = min(count, min(k, a.d - k));
  if (count <= 0) {
    for (int j = 0; j < k; ++j) source[j] = j;
    return;
  }
  // The count lowest slots by (score, slot): selection, k <= kMaxDstFanIn.
  uint32_t pruned[kMaxDstFanIn / 32] = {};
  for (int i = 0; i < count; ++i) {
    int lowest = -1;
    for (int j = 0; j < k; ++j) {
      if (pruned[j / 32] >> (j % 32) & 1u) continue;
      if (lowest < 0 || score[j] < score[lowest]) lowest = j;  // ties: the lower slot stays
    }
    pruned[lowest / 32] |= 1u << (lowest % 32);
  }
  // Features not in the group, in order; the first `count` after the shuffle are the new ones.
  int32_t candidates[kMaxDstFeatures];
  int candidate_count = 0;
  for (int f = 0, j = 0; f < a.d; ++f) {
    if (j < k && indices[j] == f) {
      ++j;
    } else {
      candidates[candidate_count++] = f;
    }
  }
  uint64_t state = hash_key(a.seed, static_cast<uint64_t>(group));
  for (int i = 0; i < count; ++i) {
    const int pick = i + static_cast<int>(draw_below(state, candidate_count - i));
    const int32_t chosen = candidates[pick];
    candidates[pick] = candidates[i];
    candidates[i] = chosen;
  }
  for (int i = 1; i < count; ++i) {  // the new features in order (insertion sort)
    const int32_t f = candidates[i];
    int at = i;
    for (; at > 0 && candidates[at - 1] > f; --at) candidates[at] = candidates[at - 1];
    candidates[at] = f;
  }
  // Merge the kept slots (in feature order already) with the new features.
  int32_t kept[kMaxDstFanIn], kept_slot[kMaxDstFanIn];
  int kept_count = 0;
  for (int j = 0; j < k; ++j) {
    if (!(pruned[j / 32] >> (j % 32) & 1u)) {
      kept[kept_count] = indices[j];
      kept_slot[kept_count++] = j;
    }
  }
  for (int out = 0, p = 0, q = 0; out < k; ++out) {
    if (q >= count || (p < kept_count && kept[p] < candidates[q])) {
      indices[out] = kept[p];
      source[out] = kept_slot[p++];
    } else {
      indices[out] = candidates[q++];
      source[out] = -1;
    }
  }
  atomicAdd(changed, static_cast<unsigned long long>(count));
}

}  // namespace

cudaError_t launch_dst_rewire_random(const DstDeviceArgs& args, DstScratch& scratch,
                                     int64_t* changed_slots, cudaStream_t stream) {
  const int64_t slots = args.G * args.k;
  SlotKeyDevice threshold{0.0, 0};
  DstDeviceArgs a = args;
  a.has_threshold = false;
  cudaError_t status = cudaSuccess;
  if (args.global && slots > 0) {
    const auto count = static_cast<int64_t>(llround(args.fraction * static_cast<double>(slots)));
    if (count > 0) {
      // Sorted (score, slot) pairs; the count-th is the threshold.
      slot_ids_kernel<<<static_cast<unsigned>(std::min<int64_t>((slots + 255) / 256, 4096)), 256, 0,
                        stream>>>(scratch.slots_in, slots);
      size_t temp_bytes = 0;
      status = cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, args.scores, scratch.keys_out,
                                               scratch.slots_in, scratch.slots_out, slots, 0, 64,
                                               stream);
      if (status != cudaSuccess) return status;
      if (temp_bytes > scratch.temp_bytes) return cudaErrorInvalidValue;
      status = cub::DeviceRadixSort::SortPairs(scratch.temp, temp_bytes, args.scores,
                                               scratch.keys_out, scratch.slots_in,
                                               scratch.slots_out, slots, 0, 64, stream);
      if (status != cudaSuccess) return status;
      if ((status = cudaMemcpyAsync(&threshold.score, scratch.keys_out + count - 1, sizeof(double),
                                    cudaMemcpyDeviceToHost, stream)) != cudaSuccess ||
          (status = cudaMemcpyAsync(&threshold.slot, scratch.slots_out + count - 1, sizeof(int64_t),
                                    cudaMemcpyDeviceToHost, stream)) != cudaSuccess ||
          (status = cudaStreamSynchronize(stream)) != cudaSuccess)
        return status;
      a.has_threshold = true;
    }
  }
  unsigned long long* changed = scratch.changed;
  if ((status = cudaMemsetAsync(changed, 0, sizeof(*changed), stream)) != cudaSuccess)
    return status;
  if (args.G > 0) {
    rewire_random_kernel<<<static_cast<unsigned>((args.G + kThreads - 1) / kThreads), kThreads, 0,
                           stream>>>(a, threshold, changed);
    if ((status = cudaGetLastError()) != cudaSuccess) return status;
  }
  unsigned long long host_changed = 0;
  if ((status = cudaMemcpyAsync(&host_changed, changed, sizeof(host_changed),
                                cudaMemcpyDeviceToHost, stream)) != cudaSuccess ||
      (status = cudaStreamSynchronize(stream)) != cudaSuccess)
    return status;
  *changed_slots = static_cast<int64_t>(host_changed);
  return cudaSuccess;
}

size_t dst_sort_temp_bytes(int64_t slots) {
  size_t bytes = 0;
  cub::DeviceRadixSort::SortPairs(
      nullptr, bytes, static_cast<const double*>(nullptr), static_cast<double*>(nullptr),
      static_cast<const int64_t*>(nullptr), static_cast<int64_t*>(nullptr), slots, 0, 64);
  return bytes;
}

}  // namespace haste::cuda
