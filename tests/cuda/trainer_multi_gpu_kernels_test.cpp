// `haste train --gpus N` (fit_on_gpus, the NCCL path) against the one-GPU loop (fit_on_gpu): the
// same small synthetic run from the same model. With N = 1 the two run the same kernels with the
// same stochastic-rounding draws, so losses, metrics and weights must agree to float noise; with
// N = 2 (skipped on a one-GPU machine) the shards draw their own rounding, so they agree within
// the GPU-vs-CPU test's bounds. With DST on, each rank rewires its own groups (the global prune
// rule's scores all-gathered through its NCCL communicator): with N = 1 it is the one-GPU loop's
// rewiring, so the runs agree as closely. Skipped without a GPU.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <haste/checkpoint.hpp>
#include <haste/cuda/cuda_check.hpp>
#include <haste/trainer.hpp>
#include <haste/trainer_device.hpp>
#include <vector>

#include "model/model_test_util.hpp"
#include "test_util/gpu.hpp"

namespace haste {
namespace {

struct SmallRun {
  Dataset train = test_util::small_synthetic(1024, 300, 256);
  Dataset test = test_util::small_synthetic(256, 300, 256, 1024);
  ModelConfig model_config;
  TrainConfig config;

  SmallRun() {
    model_config.hidden = {64};
    model_config.group_size = 8;
    model_config.fan_in = 32;
    model_config.head_fraction = 0.1;
    model_config.dropout = 0.1;
    config.epochs = 3;
    config.batch_size = 64;
    config.show_progress = false;
  }

  // The same run with DST every 8 of its 48 steps, global prune rule.
  static SmallRun with_dst(DstRegrow regrow) {
    SmallRun run;
    run.config.dst.enabled = true;
    run.config.dst.regrow = regrow;
    run.config.dst.interval = 8;
    run.config.dst.fraction = 0.3;
    run.config.dst.end = 1.0;
    return run;
  }

  // Trains a fresh model on `gpus` GPUs through NCCL, or on the one-GPU loop for 0.
  std::vector<EpochReport> run(int gpus, Model& model) const {
    TrainConfig c = config;
    c.shards = std::max(gpus, 1);
    Trainer trainer(c, model);
    std::vector<EpochReport> reports;
    auto record = [&](const EpochReport& report) { reports.push_back(report); };
    if (gpus == 0)
      fit_on_gpu(trainer, model, train, &test, record);
    else
      fit_on_gpus(trainer, model, train, &test, gpus, record);
    EXPECT_EQ(trainer.state().epochs_done, config.epochs);
    EXPECT_EQ(trainer.optimizer().steps_taken(), trainer.steps_per_epoch(1024) * config.epochs);
    return reports;
  }
};

void expect_same_run(const std::vector<EpochReport>& got, const std::vector<EpochReport>& want,
                     double loss_tolerance, double metric_tolerance) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t e = 0; e < want.size(); ++e) {
    EXPECT_NEAR(got[e].mean_loss, want[e].mean_loss, loss_tolerance * want[e].mean_loss)
        << "epoch " << e + 1;
    ASSERT_TRUE(got[e].metrics && want[e].metrics);
    for (int k : {0, 4}) {
      EXPECT_NEAR(got[e].metrics->precision[k], want[e].metrics->precision[k], metric_tolerance)
          << "P@" << k + 1 << " epoch " << e + 1;
    }
  }
}

TEST(TrainerMultiGpu, NcclPathOnOneGpuMatchesTheOneGpuLoop) {
  HASTE_REQUIRE_GPU();
  const SmallRun setup;
  ASSERT_EQ(gpu_training_unsupported(Model::build(setup.model_config, setup.train), setup.config),
            "");
  Model one_gpu = Model::build(setup.model_config, setup.train);
  Model nccl = Model::build(setup.model_config, setup.train);
  const std::vector<EpochReport> want = setup.run(0, one_gpu);
  const std::vector<EpochReport> got = setup.run(1, nccl);
  expect_same_run(got, want, 1e-5, 0.005);
  const auto a = one_gpu.float_tensors(), b = nccl.float_tensors();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    for (size_t j = 0; j < a[i].data.size(); ++j) {
      ASSERT_NEAR(b[i].data[j], a[i].data[j], 1e-3f + 1e-2f * std::abs(a[i].data[j]))
          << a[i].name << " [" << j << "]";
    }
  }
}

// Every epoch rewired the same number of tail slots in both runs (fan-in 32 of d = 64: the
// global rule's count is never capped, so noise in the weights cannot change it).
void expect_same_dst(const std::vector<EpochReport>& got, const std::vector<EpochReport>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t e = 0; e < want.size(); ++e) {
    EXPECT_GT(want[e].dst_changed_slots, 0) << "epoch " << e + 1;
    EXPECT_EQ(got[e].dst_changed_slots, want[e].dst_changed_slots) << "epoch " << e + 1;
  }
}

TEST(TrainerMultiGpu, NcclPathOnOneGpuRunsDstAsTheOneGpuLoop) {
  HASTE_REQUIRE_GPU();
  for (DstRegrow regrow : {DstRegrow::random, DstRegrow::gradient}) {
    SCOPED_TRACE(to_string(regrow));
    const SmallRun setup = SmallRun::with_dst(regrow);
    Model one_gpu = Model::build(setup.model_config, setup.train);
    Model nccl = Model::build(setup.model_config, setup.train);
    const std::vector<EpochReport> want = setup.run(0, one_gpu);
    const std::vector<EpochReport> got = setup.run(1, nccl);
    expect_same_run(got, want, 1e-4, 0.01);
    expect_same_dst(got, want);
    // Rewired alike: the tails' features agree but for a few near-ties of the prune scores.
    const std::vector<int32_t>& a = one_gpu.tail().indices;
    const std::vector<int32_t>& b = nccl.tail().indices;
    ASSERT_EQ(a.size(), b.size());
    size_t same = 0;
    for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i] ? 1 : 0;
    EXPECT_GT(static_cast<double>(same), 0.95 * static_cast<double>(a.size()));
  }
}

TEST(TrainerMultiGpu, TwoGpusTrainLikeOne) {
  HASTE_REQUIRE_GPU();
  int count = 0;
  HASTE_CUDA_CHECK(cudaGetDeviceCount(&count));
  if (count < 2) GTEST_SKIP() << "needs 2 GPUs, this machine has " << count;
  const SmallRun setup;
  Model one = Model::build(setup.model_config, setup.train);
  Model two = Model::build(setup.model_config, setup.train);
  const std::vector<EpochReport> want = setup.run(1, one);
  const std::vector<EpochReport> got = setup.run(2, two);
  expect_same_run(got, want, 0.05, 0.05);
  for (const NamedTensor<const float>& t : two.float_tensors()) {
    for (float x : t.data) ASSERT_TRUE(std::isfinite(x)) << t.name;
  }
}

// `haste train` under a launcher with a world of one (HASTE_RANK=0, HASTE_WORLD_SIZE=1,
// --device cuda): the multi-process path (NcclCommunicator::from_environment with its id
// through a file, the host's evaluation and checkpoint through HostStagedCommunicator) trains
// as --gpus 1 does. Two processes on one GPU are not tested: NCCL refuses two ranks of one
// communicator on one device.
// The multi-process path with a world of one against --gpus 1, for `setup`.
void expect_world_of_one_trains_like_one_nccl_gpu(const SmallRun& setup) {
  Model one = Model::build(setup.model_config, setup.train);
  Model process = Model::build(setup.model_config, setup.train);
  const std::vector<EpochReport> want = setup.run(1, one);

  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("haste-gpu-process-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  ::setenv("HASTE_RANK", "0", 1);
  ::setenv("HASTE_WORLD_SIZE", "1", 1);
  ::setenv("HASTE_LOCAL_RANK", "0", 1);
  TrainConfig config = setup.config;
  config.shards = 1;
  Trainer trainer(config, process);
  std::vector<EpochReport> got;
  fit_on_gpu_process(trainer, process, setup.train, &setup.test, dir / "nccl-id",
                     std::chrono::seconds(30),
                     [&](const EpochReport& report, shard::Communicator& group) {
                       EXPECT_EQ(group.size(), 1);
                       got.push_back(report);
                       save_run_checkpoint(dir, process, group, &trainer);
                     });
  ::unsetenv("HASTE_RANK");
  ::unsetenv("HASTE_WORLD_SIZE");
  ::unsetenv("HASTE_LOCAL_RANK");
  expect_same_run(got, want, 1e-5, 0.005);
  if (setup.config.dst.enabled) expect_same_dst(got, want);
  EXPECT_FALSE(std::filesystem::exists(dir / "nccl-id"));  // removed once every rank read it
  Model loaded = Checkpoint(dir).load_model();
  EXPECT_EQ(loaded.tail().indices, process.tail().indices);
  const Rankings a = loaded.predict(setup.test, 5), b = process.predict(setup.test, 5);
  EXPECT_EQ(a.labels, b.labels);
  std::filesystem::remove_all(dir);
}

TEST(TrainerMultiGpu, MultiProcessPathWithAWorldOfOneTrainsLikeOneNcclGpu) {
  HASTE_REQUIRE_GPU();
  expect_world_of_one_trains_like_one_nccl_gpu(SmallRun());
}

// The same with DST (random regrowth on the multi-process GPU path, which refused DST before).
TEST(TrainerMultiGpu, MultiProcessPathWithAWorldOfOneRunsDstLikeOneNcclGpu) {
  HASTE_REQUIRE_GPU();
  expect_world_of_one_trains_like_one_nccl_gpu(SmallRun::with_dst(DstRegrow::random));
  expect_world_of_one_trains_like_one_nccl_gpu(SmallRun::with_dst(DstRegrow::gradient));
}

}  // namespace
}  // namespace haste
