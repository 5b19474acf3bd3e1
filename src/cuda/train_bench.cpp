// `haste bench train` on the GPU (include/haste/train_bench.hpp): one output layer, random
// weights and inputs made on the device, the whole step timed with CUDA events; or the layer
// label-sharded over several GPUs (TrainBenchCase::gpus), one thread and NCCL rank per GPU,
// the step including the all-reduce of dh.
#include <algorithm>
#include <chrono>
#include <functional>
#include <haste/cuda/cuda_check.hpp>
#include <haste/cuda/device_buffer.hpp>
#include <haste/cuda/nccl_communicator.hpp>
#include <haste/cuda/output_layer_gpu.hpp>
#include <haste/shard/label_shards.hpp>
#include <haste/train_bench.hpp>
#include <numeric>
#include <random>
#include <thread>

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

// One GPU's layer (the whole layer, or one label shard of it) with its synthetic batch.
struct BenchLayer {
  cuda::OutputLayerGpu layer;
  DeviceBuffer<bf16> hT;
  DeviceBuffer<float> dhT;
  DeviceBuffer<int64_t> indptr;
  DeviceBuffer<int32_t> indices;
  DeviceBuffer<double> loss;
  cuda::LabelTargetsDevice targets;
  int64_t B;
  double lr;

  // `targets` are in this layer's label ids; h is the same on every GPU (seeded alike).
  BenchLayer(const cuda::OutputLayerShape& shape, const TrainBenchCase& c,
             const TrainBenchOptions& options, const CsrMatrix& batch_targets, uint64_t seed)
      : layer(shape, options.optimizer, c.B, seed),
        hT(c.d * c.B),
        dhT(c.d * c.B),
        indptr(batch_targets.indptr),
        indices(batch_targets.indices.empty() ? std::vector<int32_t>{0} : batch_targets.indices),
        loss(1),
        targets{indptr.data(), indices.data(), nullptr, batch_targets.nnz()},
        B(c.B),
        lr(options.optimizer.lr) {
    layer.randomize(seed);
    HASTE_CUDA_CHECK(
        cuda::launch_fill_uniform(hT.data(), c.d * c.B, c.B, c.d, 1.f, options.seed + 7, nullptr));
    HASTE_CUDA_CHECK(cudaDeviceSynchronize());
  }

  void clear(cudaStream_t stream) {
    HASTE_CUDA_CHECK(cudaMemsetAsync(loss.data(), 0, sizeof(double), stream));
    HASTE_CUDA_CHECK(cudaMemsetAsync(dhT.data(), 0, dhT.size() * sizeof(float), stream));
  }
  // The training step as the trainer runs it (the tail weights' update in the fused kernel).
  void step(cudaStream_t stream) {
    clear(stream);
    layer.train_step(B, B, hT.data(), targets, dhT.data(), loss.data(), lr, stream);
  }
  // Its two parts run apart (the unfused step): gradients written, then every update.
  void forward_backward(cudaStream_t stream) {
    clear(stream);
    layer.forward_backward(B, B, hT.data(), targets, dhT.data(), loss.data(), stream);
  }
  void update(cudaStream_t stream) { layer.update(lr, stream); }
};

// Times the step, takes its peak memory and the layer's bytes, then times the step's two
// unfused parts; `after_backward` follows every backward (the sharded run's all-reduce of dh,
// nothing on one GPU). Every rank of a sharded run measures (the collectives need them all);
// GPU 0's figures go to `result`, when given.
void measure(BenchLayer& bench, int runs, int64_t free_before, cudaStream_t stream,
             const std::function<void()>& after_backward, TrainBenchResult* result) {
  cuda::EventTimer timer;
  const cuda::Timing step = timer.time(
      runs,
      [&] {
        bench.step(stream);
        after_backward();
      },
      stream);
  // Every allocation of the step is made before or in its first run, so what is in use now is
  // its peak (the parts timed next allocate the tail's weight gradient, which the step lacks).
  const int64_t peak = free_before - device_free_bytes();
  const cuda::OutputLayerMemory memory = bench.layer.memory();
  const double forward_backward_ms = timer
                                         .time(
                                             runs,
                                             [&] {
                                               bench.forward_backward(stream);
                                               after_backward();
                                             },
                                             stream)
                                         .median_ms;
  const double update_ms = timer
                               .time(
                                   runs, [&] { bench.update(stream); }, stream)
                               .median_ms;
  if (result == nullptr) return;
  result->peak_mem_bytes = peak;
  result->median_ms = step.median_ms;
  result->p10_ms = step.p10_ms;
  result->p90_ms = step.p90_ms;
  result->runs = step.runs;
  result->forward_backward_ms = forward_backward_ms;
  result->update_ms = update_ms;
  result->loss = bench.loss.download()[0];
  result->output_layer_bytes = memory.output_layer_bytes();
  result->memory_parts = memory.parts();
}

cuda::OutputLayerShape layer_shape(TrainBenchResult& result) {
  const TrainBenchCase& c = result.bench_case;
  check(c.impl == "haste" || c.impl == "dense", "bench train: impl '{}' is not haste or dense",
        c.impl);
  const cuda::OutputLayerShape shape = c.impl == "dense"
                                           ? cuda::OutputLayerShape::dense(c.d, c.L)
                                           : cuda::OutputLayerShape::haste(c.d, c.L, c.H, c.g, c.k);
  result.bench_case.H = shape.H;
  return shape;
}

void run_one_gpu(TrainBenchResult& result, const TrainBenchOptions& options) {
  const TrainBenchCase& c = result.bench_case;
  const cuda::OutputLayerShape shape = layer_shape(result);
  const int64_t free_before = device_free_bytes();
  BenchLayer bench(shape, c, options, random_targets(c.B, c.L, options.positives, options.seed),
                   options.seed);
  measure(
      bench, options.runs, free_before, nullptr, [] {}, &result);
  if (shape.G > 0 && shape.H == 0) {
    auto rewire_ms = [&](DstRegrow regrow) {
      HASTE_CUDA_CHECK(cudaDeviceSynchronize());
      const auto start = std::chrono::steady_clock::now();
      bench.layer.rewire_tail(DstPrune::global, regrow, 0.25, options.seed,
                              {bench.B, bench.hT.data(), bench.targets}, nullptr);
      HASTE_CUDA_CHECK(cudaDeviceSynchronize());
      return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
          .count();
    };
    result.dst_ms = rewire_ms(DstRegrow::random);
    result.dst_gradient_ms = rewire_ms(DstRegrow::gradient);
  }
}

// The batch's targets (model ids of the whole layer) in `shard`'s label ids, others left out.
CsrMatrix shard_targets(const CsrMatrix& targets, const cuda::OutputLayerShape& whole,
                        const shard::LabelShard& shard) {
  CsrMatrix out;
  out.cols = shard.head_labels() + shard.groups() * whole.g;
  std::vector<int32_t> row;
  for (int64_t b = 0; b < targets.rows; ++b) {
    row.clear();
    for (int32_t id : targets.row_indices(b)) {
      const int32_t mine = shard::shard_label(shard, id, whole.H, whole.g);
      if (mine >= 0) row.push_back(mine);
    }
    out.append_row(row, {});
  }
  return out;
}

void run_sharded(TrainBenchResult& result, const TrainBenchOptions& options) {
  const TrainBenchCase& c = result.bench_case;
  const cuda::OutputLayerShape whole = layer_shape(result);
  std::vector<int> devices(c.gpus);
  std::iota(devices.begin(), devices.end(), 0);
  auto comms = cuda::NcclCommunicator::for_devices(devices);
  const std::vector<shard::LabelShard> shards = shard::split_labels(whole.H, whole.G, c.gpus);
  const CsrMatrix targets = random_targets(c.B, c.L, options.positives, options.seed);
  std::vector<std::exception_ptr> failures(c.gpus);
  std::vector<std::thread> threads;
  for (int r = 0; r < c.gpus; ++r) {
    threads.emplace_back([&, r] {
      cuda::NcclCommunicator& comm = *comms[r];
      try {
        HASTE_CUDA_CHECK(cudaSetDevice(comm.device()));
        const int64_t free_before = device_free_bytes();
        BenchLayer bench(whole.part(shards[r]), c, options,
                         shard_targets(targets, whole, shards[r]), options.seed + r);
        measure(
            bench, options.runs, free_before, comm.stream(),
            [&] { comm.all_reduce(std::span<float>(bench.dhT.data(), bench.dhT.size())); },
            r == 0 ? &result : nullptr);
      } catch (...) {
        failures[r] = std::current_exception();
        for (auto& other : comms) other->abort();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const std::exception_ptr& failure : failures) {
    if (failure) std::rethrow_exception(failure);
  }
}

}  // namespace

TrainBenchResult run_train_bench(const TrainBenchCase& c, const TrainBenchOptions& options) {
  TrainBenchResult result;
  result.bench_case = c;
  try {
    if (c.gpus > 0) {
      run_sharded(result, options);
    } else {
      run_one_gpu(result, options);
    }
  } catch (const std::exception& e) {
    result.error = e.what();
    cudaGetLastError();  // a failed allocation leaves no sticky error; clear any other
  }
  return result;
}

}  // namespace haste
