// Timing device work with CUDA events (METHOD.md: warm up, then many runs, median): shared by
// bench/kernel_bench.cpp and the training-step benchmark (src/cuda/train_bench.cpp).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <functional>
#include <haste/cuda/cuda_check.hpp>
#include <vector>

namespace haste::cuda {

struct Timing {
  double median_ms = 0, p10_ms = 0, p90_ms = 0;
  int runs = 0;
};

class EventTimer {
 public:
  EventTimer() {
    HASTE_CUDA_CHECK(cudaEventCreate(&start_));
    HASTE_CUDA_CHECK(cudaEventCreate(&stop_));
  }
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  ~EventTimer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  // Warm-up, then `runs` timed calls of `work` (enqueued on `stream`, the default stream unless
  // given), each between two events.
  Timing time(int runs, const std::function<void()>& work, cudaStream_t stream = nullptr) {
    for (int i = 0; i < 3; ++i) work();
    HASTE_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<double> ms;
    for (int i = 0; i < runs; ++i) {
      HASTE_CUDA_CHECK(cudaEventRecord(start_, stream));
      work();
      HASTE_CUDA_CHECK(cudaEventRecord(stop_, stream));
      HASTE_CUDA_CHECK(cudaEventSynchronize(stop_));
      float elapsed = 0;
      HASTE_CUDA_CHECK(cudaEventElapsedTime(&elapsed, start_, stop_));
      ms.push_back(elapsed);
    }
    std::sort(ms.begin(), ms.end());
    auto at = [&](double q) { return ms[static_cast<size_t>(q * (ms.size() - 1) + 0.5)]; };
    return {at(0.5), at(0.1), at(0.9), runs};
  }

 private:
  cudaEvent_t start_{}, stop_{};
};

}  // namespace haste::cuda
