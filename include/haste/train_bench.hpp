// The output layer's training step on synthetic batches (issue 6 item 3, `haste bench train`):
// random h [B, d] and `positives` random labels per row, one step = forward + loss + backward +
// optimizer update, timed on the GPU with CUDA events (warm-up, then the median of many runs).
// Plain C++ so that the CLI builds without CUDA: a build without the backend throws.
#pragma once

#include <cstdint>
#include <haste/optimizer.hpp>
#include <string>
#include <utility>
#include <vector>

namespace haste {

struct TrainBenchCase {
  std::string impl;  // "haste" (head of H labels + group-shared tail) or "dense" (H = L)
  int64_t B = 256, d = 768, L = 0, H = 0, g = 32, k = 64;
  // 0: the one-GPU layer. N >= 1: the layer label-sharded over GPUs 0..N-1 (DESIGN.md 11), each
  // holding its shard, h replicated, one step = every shard's forward + backward, the NCCL
  // all-reduce of dh, and every shard's update (timed on GPU 0; memory is GPU 0's).
  int gpus = 0;
};

struct TrainBenchOptions {
  int runs = 50;
  int positives = 5;  // labels per row
  OptimizerConfig optimizer;
  uint64_t seed = 1;
};

struct TrainBenchResult {
  TrainBenchCase bench_case;  // H as built (rounded up to a multiple of g)
  double median_ms = 0, p10_ms = 0, p90_ms = 0;
  int runs = 0;
  // The step unfused, its two parts timed apart (medians): loss + gradients with the tail's
  // weight gradient written, and every optimizer update. The step itself (median_ms) applies
  // the tail weights' update inside the fused kernel, so it is shorter than their sum.
  double forward_backward_ms = 0, update_ms = 0;
  // One DST rewiring of the tail (global prune, a quarter of the slots) after the steps, with
  // random and with gradient regrowth, wall time including its host side; one-GPU rows
  // without a head (else 0).
  double dst_ms = 0, dst_gradient_ms = 0;
  double loss = 0;             // of the last step (a sanity figure: finite, near L * log 2 / ...)
  int64_t peak_mem_bytes = 0;  // device memory in use at the peak (cudaMemGetInfo)
  int64_t output_layer_bytes = 0;  // weights + indices + gradients + optimizer state
  std::vector<std::pair<std::string, int64_t>> memory_parts;  // OutputLayerMemory::parts()
  std::string error;  // set when the case could not run (out of memory, unsupported shape)
};

// Runs one case; never throws for a case that cannot run (the result carries the error).
TrainBenchResult run_train_bench(const TrainBenchCase& bench_case,
                                 const TrainBenchOptions& options);

}  // namespace haste
