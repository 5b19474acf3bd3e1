// What the one-GPU loop (trainer_gpu.cpp) and the multi-GPU loop (trainer_multi_gpu.cpp)
// share: the batch multiple, how often the host syncs for a progress line, and the encoder's
// optimizer step.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <haste/cuda/encoder_gpu.hpp>
#include <haste/cuda/optimizer_gpu.hpp>
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
