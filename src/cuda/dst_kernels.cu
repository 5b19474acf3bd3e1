// DST's choice of slots and features on the device (dst_launch.hpp), for one GPU: the rules of
// src/model/dst.cpp. Random regrowth draws from the host's random streams, so its result equals
// haste::rewire_tail_indices bit for bit; gradient regrowth ranks the same group-gradient norms,
// computed here with cuBLAS in another summation order than the host's BLAS (near-ties may go
// the other way).
//
// The global rule's threshold is the key (score, slot) of the count-th lowest slot: a stable
// radix sort of the scores with the slot ids as values puts equal scores in slot order, as the
// host's (score, slot) comparison does. Then one thread per group chooses its pruned slots (its
// lowest keys, up to the cap), its new features (partial Fisher-Yates over the features not in
// the group with Rng(hash_key(seed, group)), or the largest gradient norms, ties to the lower
// feature) and writes the group's sorted indices and source slots.
#include <algorithm>
#include <cmath>
#include <cub/device/device_radix_sort.cuh>

#include "cpu/sigmoid.hpp"
#include "cuda/dst_launch.hpp"
#include "data/random.hpp"

namespace haste::cuda {
namespace {

constexpr int kThreads = 128;

unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 1 << 20));
}

__global__ void slot_ids_kernel(int64_t* ids, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    ids[i] = i;
}

__device__ inline bool at_or_below(double score, int64_t slot, const DstThreshold& threshold) {
  return score != threshold.score ? score < threshold.score : slot <= threshold.slot;
}

// Rng::below on the device: the high 64 bits of the 128-bit product.
__device__ inline uint64_t draw_below(uint64_t& state, uint64_t n) {
  state += 0x9e3779b97f4a7c15ULL;
  return __umul64hi(mix64(state), n);
}

__global__ void rewire_kernel(DstDeviceArgs a) {
  const int64_t local = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (local >= a.groups) return;
  const int64_t group = a.first_group + local;
  const int64_t whole_tail_group = a.part_first_group + group;
  const int k = a.k;
  const double* score = a.scores + group * k;
  int32_t* indices = a.indices + group * k;
  int32_t* source = a.source + group * k;

  int count = 0;
  if (a.global) {
    for (int j = 0; j < k && a.threshold.exists; ++j)
      count += at_or_below(score[j], whole_tail_group * k + j, a.threshold) ? 1 : 0;
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
  // Features not in the group, in order; the first `count` after the choice are the new ones.
  int32_t candidates[kMaxDstFeatures];
  int candidate_count = 0;
  for (int f = 0, j = 0; f < a.d; ++f) {
    if (j < k && indices[j] == f) {
      ++j;
    } else {
      candidates[candidate_count++] = f;
    }
  }
  if (a.norms != nullptr) {
    // The largest norms first, ties to the lower feature: selection.
    const double* norm = a.norms + local * a.d;
    for (int i = 0; i < count; ++i) {
      int best = i;
      for (int c = i + 1; c < candidate_count; ++c) {
        const int32_t f = candidates[c], b = candidates[best];
        if (norm[f] > norm[b] || (norm[f] == norm[b] && f < b)) best = c;
      }
      const int32_t chosen = candidates[best];
      candidates[best] = candidates[i];
      candidates[i] = chosen;
    }
  } else {
    uint64_t state = hash_key(a.seed, static_cast<uint64_t>(whole_tail_group));
    for (int i = 0; i < count; ++i) {
      const int pick = i + static_cast<int>(draw_below(state, candidate_count - i));
      const int32_t chosen = candidates[pick];
      candidates[pick] = candidates[i];
      candidates[i] = chosen;
    }
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
  atomicAdd(a.changed_slots, static_cast<unsigned long long>(count));
}

__global__ void tail_sweep_kernel(DstTailGradient a, float inv_batch) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < a.B * a.labels;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t l = i % a.labels;
    a.dz[i] = l < a.real ? sigmoid(__bfloat162float(a.z[i])) * inv_batch : 0.f;
  }
}

// One thread per batch row: its targets among the stretch's labels.
__global__ void tail_positives_kernel(DstTailGradient a, float inv_batch) {
  const int64_t b = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (b >= a.B) return;
  for (int64_t p = a.indptr[b]; p < a.indptr[b + 1]; ++p) {
    const int64_t l = a.target_ids[p] - a.first_id;
    if (l < 0 || l >= a.real) continue;
    const float z = __bfloat162float(a.z[b * a.labels + l]);
    const float y = a.target_values ? a.target_values[p] : 1.f;
    a.dz[b * a.labels + l] = sigmoid_minus(z, y) * inv_batch;
  }
}

__global__ void group_norms_kernel(const float* product, int64_t groups, int64_t g, int64_t d,
                                   double* norms) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < groups * d;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t group = i / d, f = i % d;
    double sum = 0;
    for (int64_t l = group * g; l < (group + 1) * g; ++l) {
      const double x = product[l * d + f];
      sum += x * x;
    }
    norms[i] = sum;
  }
}

__global__ void bf16_to_float_kernel(const __nv_bfloat16* in, int64_t n, float* out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    out[i] = __bfloat162float(in[i]);
}

}  // namespace

size_t dst_sort_temp_bytes(int64_t slots) {
  size_t bytes = 0;
  cub::DeviceRadixSort::SortPairs(
      nullptr, bytes, static_cast<const double*>(nullptr), static_cast<double*>(nullptr),
      static_cast<const int64_t*>(nullptr), static_cast<int64_t*>(nullptr), slots, 0, 64);
  return bytes;
}

cudaError_t dst_global_threshold(const double* scores, int64_t slots, double fraction,
                                 const DstSortScratch& scratch, DstThreshold* threshold,
                                 cudaStream_t stream) {
  *threshold = {};
  const auto count = static_cast<int64_t>(std::llround(fraction * static_cast<double>(slots)));
  if (count <= 0 || slots == 0) return cudaSuccess;
  slot_ids_kernel<<<blocks_for(slots), kThreads, 0, stream>>>(scratch.slots_in, slots);
  size_t temp_bytes = scratch.temp_bytes;
  cudaError_t status =
      cub::DeviceRadixSort::SortPairs(scratch.temp, temp_bytes, scores, scratch.keys_out,
                                      scratch.slots_in, scratch.slots_out, slots, 0, 64, stream);
  if (status != cudaSuccess) return status;
  if ((status = cudaMemcpyAsync(&threshold->score, scratch.keys_out + count - 1, sizeof(double),
                                cudaMemcpyDeviceToHost, stream)) != cudaSuccess ||
      (status = cudaMemcpyAsync(&threshold->slot, scratch.slots_out + count - 1, sizeof(int64_t),
                                cudaMemcpyDeviceToHost, stream)) != cudaSuccess ||
      (status = cudaStreamSynchronize(stream)) != cudaSuccess)
    return status;
  threshold->exists = true;
  return cudaSuccess;
}

cudaError_t launch_dst_rewire(const DstDeviceArgs& args, cudaStream_t stream) {
  if (args.groups == 0) return cudaSuccess;
  rewire_kernel<<<static_cast<unsigned>((args.groups + kThreads - 1) / kThreads), kThreads, 0,
                  stream>>>(args);
  return cudaGetLastError();
}

cudaError_t launch_dst_tail_gradient(const DstTailGradient& args, cudaStream_t stream) {
  const float inv_batch = 1.f / static_cast<float>(args.B);
  tail_sweep_kernel<<<blocks_for(args.B * args.labels), kThreads, 0, stream>>>(args, inv_batch);
  tail_positives_kernel<<<blocks_for(args.B), kThreads, 0, stream>>>(args, inv_batch);
  return cudaGetLastError();
}

cudaError_t launch_dst_group_norms(const float* product, int64_t groups, int64_t g, int64_t d,
                                   double* norms, cudaStream_t stream) {
  if (groups == 0) return cudaSuccess;
  group_norms_kernel<<<blocks_for(groups * d), kThreads, 0, stream>>>(product, groups, g, d, norms);
  return cudaGetLastError();
}

cudaError_t launch_bf16_to_float(const __nv_bfloat16* in, int64_t n, float* out,
                                 cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  bf16_to_float_kernel<<<blocks_for(n), kThreads, 0, stream>>>(in, n, out);
  return cudaGetLastError();
}

}  // namespace haste::cuda
