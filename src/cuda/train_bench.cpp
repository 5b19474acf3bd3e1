// `haste bench train` on the GPU (include/haste/train_bench.hpp): one output layer, random
// weights and inputs made on the device, the whole step timed with CUDA events.
#include <algorithm>
#include <haste/cuda/cuda_check.hpp>
#include <haste/cuda/device_buffer.hpp>
#include <haste/cuda/output_layer_gpu.hpp>
#include <haste/train_bench.hpp>
#include <random>

#include "cuda/event_timer.hpp"
#include "cuda/output_layer_launch.hpp"

namespace haste {
namespace {

using cuda::bf16;
using cuda::DeviceBuffer;

// B rows of `positives` distinct labels of [0, L), sorted: the batch's targets (model ids).
CsrMatrix random_targets(int64_t B, int64_t L, int positives, uint64_t seed) {
  std::mt19937_64 engine(seed);
  CsrMatrix targets;
  targets.cols = L;
  std::vector<int32_t> row;
  for (int64_t b = 0; b < B; ++b) {
    row.clear();
    while (static_cast<int>(row.size()) < std::min<int64_t>(positives, L)) {
      const auto label = static_cast<int32_t>(engine() % static_cast<uint64_t>(L));
      if (std::find(row.begin(), row.end(), label) == row.end()) row.push_back(label);
    }
    std::sort(row.begin(), row.end());
    targets.append_row(row, {});
  }
  return targets;
}

int64_t device_free_bytes() {
  size_t free = 0, total = 0;
  HASTE_CUDA_CHECK(cudaMemGetInfo(&free, &total));
  return static_cast<int64_t>(free);
}

}  // namespace

TrainBenchResult run_train_bench(const TrainBenchCase& c, const TrainBenchOptions& options) {
  TrainBenchResult result;
  result.bench_case = c;
  try {
    check(c.impl == "haste" || c.impl == "dense", "bench train: impl '{}' is not haste or dense",
          c.impl);
    const cuda::OutputLayerShape shape =
        c.impl == "dense" ? cuda::OutputLayerShape::dense(c.d, c.L)
                          : cuda::OutputLayerShape::haste(c.d, c.L, c.H, c.g, c.k);
    result.bench_case.H = shape.H;
    const int64_t free_before = device_free_bytes();
    cuda::OutputLayerGpu layer(shape, options.optimizer, c.B, options.seed);
    layer.randomize(options.seed);
    DeviceBuffer<bf16> hT(c.d * c.B);
    HASTE_CUDA_CHECK(
        cuda::launch_fill_uniform(hT.data(), c.d * c.B, c.B, c.d, 1.f, options.seed + 7, nullptr));
    DeviceBuffer<float> dhT(c.d * c.B);
    const CsrMatrix targets = random_targets(c.B, c.L, options.positives, options.seed);
    DeviceBuffer<int64_t> indptr(targets.indptr);
    DeviceBuffer<int32_t> indices(targets.indices);
    DeviceBuffer<double> loss(1);
    const cuda::LabelTargetsDevice device_targets{indptr.data(), indices.data(), nullptr,
                                                  targets.nnz()};
    auto forward_backward = [&] {
      HASTE_CUDA_CHECK(cudaMemsetAsync(loss.data(), 0, sizeof(double)));
      HASTE_CUDA_CHECK(cudaMemsetAsync(dhT.data(), 0, dhT.size() * sizeof(float)));
      layer.forward_backward(c.B, hT.data(), device_targets, dhT.data(), loss.data(), nullptr);
    };
    auto update = [&] { layer.update(options.optimizer.lr, nullptr); };
    cuda::EventTimer timer;
    const cuda::Timing timing = timer.time(options.runs, [&] {
      forward_backward();
      update();
    });
    result.forward_backward_ms = timer.time(options.runs, forward_backward).median_ms;
    result.update_ms = timer.time(options.runs, update).median_ms;
    // Every allocation is made before or in the first step, so what is in use now is the peak.
    result.peak_mem_bytes = free_before - device_free_bytes();
    result.median_ms = timing.median_ms;
    result.p10_ms = timing.p10_ms;
    result.p90_ms = timing.p90_ms;
    result.runs = timing.runs;
    result.loss = loss.download()[0];
    const cuda::OutputLayerMemory memory = layer.memory();
    result.output_layer_bytes = memory.output_layer_bytes();
    result.memory_parts = memory.parts();
  } catch (const std::exception& e) {
    result.error = e.what();
    cudaGetLastError();  // a failed allocation leaves no sticky error; clear any other
  }
  return result;
}

}  // namespace haste
