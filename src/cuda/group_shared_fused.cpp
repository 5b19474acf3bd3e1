// Host side of the fused group-shared kernels: checks what the kernels cannot check on the
// device (shape, pointers, label range, shared memory for d), then launches them; batches
// larger than one thread-block cluster holds run as several launches.
#include <algorithm>
#include <haste/cuda/cuda_check.hpp>
#include <haste/cuda/group_shared_fused.hpp>
#include <haste/error.hpp>

#include "cuda/group_shared_launch.hpp"

namespace haste::cuda {
namespace {

// Throws unless the device gives a block `bytes` of shared memory.
void check_shared_memory(const char* kernel, size_t bytes, int64_t d) {
  int device = 0, limit = 0;
  HASTE_CUDA_CHECK(cudaGetDevice(&device));
  HASTE_CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  check(bytes <= static_cast<size_t>(limit),
        "{}: d = {} needs {} KB of shared memory per block, more than this GPU's {} KB; use a "
        "smaller d or the unfused kernels",
        kernel, d, bytes / 1024, limit / 1024);
}

}  // namespace

void group_shared_fused_train(const GroupSharedDevice& layer, int64_t B, int64_t rows,
                              const bf16* hT, const TailTargetsDevice& targets, bf16* dweights,
                              float* dbias, float* dhT, double* loss, cudaStream_t stream,
                              const FusedWeightUpdate* update) {
  constexpr const char* kKernel = "fused group-shared training kernel";
  check_supported(layer.shape, B);
  check(rows >= 1 && rows <= B, "{}: {} real rows in a batch of {}", kKernel, rows, B);
  check(layer.shape.g > 1,
        "{}: g = 1 (standard fixed fan-in) is not fused; run group_shared_forward, "
        "bce_with_logits_tail and the two backward kernels instead",
        kKernel);
  check(layer.indices && layer.weights && layer.bias && hT && (dweights || update) && dbias &&
            dhT && loss && targets.indptr && targets.indices,
        "{}: a device pointer is null", kKernel);
  if (update) {
    check(update->weights == layer.weights,
          "{}: the in-kernel update must write the layer's own weights", kKernel);
    check(B <= kFusedTrainRows,
          "{}: a batch of {} rows runs as several launches, so the weight update cannot be "
          "applied in the kernel (at most {} rows); write the gradient and update after",
          kKernel, B, kFusedTrainRows);
    check(update->optimizer.state.first && (update->optimizer.scalars.kind == OptimizerKind::sgd ||
                                            update->optimizer.state.second),
          "{}: the in-kernel update's optimizer state is null", kKernel);
  }
  check(targets.range.first >= 0 && targets.range.count >= 0 &&
            targets.range.count <= layer.shape.labels(),
        "{}: label range (first {}, count {}) must lie in [0, L_tail = {}] labels", kKernel,
        targets.range.first, targets.range.count, layer.shape.labels());
  check_shared_memory(kKernel,
                      gsff_fused_train_shared_bytes(layer.shape.g, layer.shape.k, layer.shape.d),
                      layer.shape.d);
  if (layer.shape.G == 0) return;

  FusedTrainArgs args;
  args.layer = {.B = B,
                .d = layer.shape.d,
                .G = layer.shape.G,
                .g = layer.shape.g,
                .k = layer.shape.k,
                .indices = layer.indices,
                .weights = layer.weights,
                .bias = layer.bias,
                .hT = hT,
                .dweights = dweights,
                .dbias = dbias,
                .dhT = dhT};
  args.real_rows = rows;
  args.inv_batch = 1.f / static_cast<float>(rows);
  args.targets = targets;
  args.loss = loss;
  // The kernel adds every block's dbias partial with atomics.
  HASTE_CUDA_CHECK(cudaMemsetAsync(dbias, 0, layer.shape.labels() * sizeof(float), stream));
  for (int64_t begin = 0; begin < B; begin += kFusedTrainRows) {
    args.batch_begin = begin;
    args.batch_rows = static_cast<int>(std::min(kFusedTrainRows, B - begin));
    args.accumulate = begin > 0;
    if (update) {
      args.updated_weights = update->weights;
      args.update = update->optimizer;
    }
    HASTE_CUDA_CHECK(launch_gsff_fused_train(args, stream));
  }
}

}  // namespace haste::cuda
