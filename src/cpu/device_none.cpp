// The device API in a build without the CUDA backend.
#include <haste/device.hpp>
#include <haste/error.hpp>
#include <haste/train_bench.hpp>
#include <haste/trainer_device.hpp>

namespace haste {

bool cuda_compiled() { return false; }

GpuInventory detect_gpus() {
  return {{}, "this build of haste has no CUDA backend (no CUDA compiler was found)"};
}

TrainBenchResult run_train_bench(const TrainBenchCase& bench_case, const TrainBenchOptions&) {
  TrainBenchResult result;
  result.bench_case = bench_case;
  result.error = "this build of haste has no CUDA backend";
  return result;
}

std::string gpu_training_unsupported(const Model&, const TrainConfig&) {
  return "this build of haste has no CUDA backend";
}

void fit_on_gpu(Trainer&, Model&, const Dataset&, const Dataset*,
                const std::function<void(const EpochReport&)>&) {
  fail("train: this build of haste has no CUDA backend");
}

void fit_on_gpus(Trainer&, Model&, const Dataset&, const Dataset*, int,
                 const std::function<void(const EpochReport&)>&) {
  fail("train: this build of haste has no CUDA backend");
}

void fit_on_gpu_process(Trainer&, Model&, const Dataset&, const Dataset*,
                        const std::filesystem::path&, std::chrono::milliseconds,
                        const RankEpochCallback&) {
  fail("train: this build of haste has no CUDA backend");
}

}  // namespace haste
