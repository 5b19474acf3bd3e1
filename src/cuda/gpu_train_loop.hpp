// What the one-GPU loop (trainer_gpu.cpp) and the multi-GPU loop (trainer_multi_gpu.cpp)
// share: the batch multiple, how often the host syncs for a progress line, a batch's targets,
// the encoder's optimizer step and DST when it is due.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <haste/cuda/batch_upload.hpp>
#include <haste/cuda/encoder_gpu.hpp>
#include <haste/cuda/optimizer_gpu.hpp>
#include <haste/cuda/output_layer_gpu.hpp>
#include <haste/trainer.hpp>
#include <span>
#include <vector>

namespace haste::cuda {

constexpr int64_t kRowMultiple = 16;    // the tail kernels' batch multiple
constexpr int64_t kProgressSteps = 50;  // steps between progress lines (each syncs the device)

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The rows of batch `batch` of an epoch's row order (the last batch may be short).
inline std::span<const int64_t> batch_rows(const std::vector<int64_t>& order, int64_t batch,
                                           int64_t batch_size) {
  const auto N = static_cast<int64_t>(order.size());
  const int64_t first = batch * batch_size;
  return {order.data() + first, static_cast<size_t>(std::min(batch_size, N - first))};
}

// The output layer's targets of an uploaded batch (model label ids, pattern targets).
inline LabelTargetsDevice targets_of(const DeviceBatch& batch) {
  return {batch.label_indptr, batch.label_indices, nullptr, batch.label_nnz};
}

// DST after step `steps_done` of `total_steps` when the schedule says so (Trainer::fit's rule):
// `output`'s tail rewired on that step's batch (a label-sharded rank passes its `part`).
// Returns the slots changed (every rank's), 0 when not due.
inline int64_t rewire_if_due(const TrainConfig& config, int64_t steps_done, int64_t total_steps,
                             OutputLayerGpu& output, const TailGradientBatch& batch,
                             cudaStream_t stream, const TailPart& part = {}) {
  if (!config.dst.due(steps_done, total_steps)) return 0;
  return output
      .rewire_tail(config.dst.prune, config.dst.regrow,
                   config.dst.fraction_at(steps_done, total_steps),
                   dst_seed(config.seed, steps_done), batch, stream, part)
      .changed_slots;
}

// The encoder's parameters with their optimizer handles; lazy rows for a sparse input layer.
struct EncoderUpdate {
  OptimizerGpu optimizer;
  std::vector<int> handles;

  EncoderUpdate(const OptimizerConfig& config, uint64_t seed, EncoderGpu& encoder)
      : optimizer(config, seed) {
    for (const DeviceParameter& p : encoder.parameters()) {
      handles.push_back(optimizer.add(p.name, p.shape));
    }
  }

  void step(double lr, EncoderGpu& encoder, cudaStream_t stream) {
    optimizer.begin_step(lr);
    std::vector<DeviceParameter> parameters = encoder.parameters();
    for (size_t i = 0; i < parameters.size(); ++i) {
      const DeviceParameter& p = parameters[i];
      if (p.row_sparse) {
        optimizer.update_rows(handles[i], p.value, encoder.sparse_weight_grad(),
                              encoder.touched_rows(), encoder.touched_count(),
                              encoder.max_touched_rows(), stream);
      } else {
        optimizer.update(handles[i], p.value, p.grad, stream);
      }
    }
  }
};

}  // namespace haste::cuda
