// Training on the GPU (fit_on_gpu) against Trainer::fit on the CPU: the same small synthetic run
// (sparse inputs, dense head + group-shared tail, AdamW, dropout) from the same model, compared
// epoch by epoch. The GPU keeps the output layer in bf16 with stochastic rounding, so the two
// runs are not bit-equal: mean losses agree within 5% and P@1 / P@5 within 0.05. The trained
// model and optimizer state come back to the host (steps, finite weights). The test set is
// ranked on the device (fused top-k) in the GPU run. With DST (every 8 steps; random and
// gradient regrowth) the GPU run changes tail slots and keeps every group's indices sorted and
// distinct.
// Skipped without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <haste/trainer.hpp>
#include <haste/trainer_device.hpp>
#include <optional>
#include <vector>

#include "model/model_test_util.hpp"
#include "test_util/gpu.hpp"

namespace haste {
namespace {

// Without DST, or with DST and this regrowth rule.
class TrainerGpu : public ::testing::TestWithParam<std::optional<DstRegrow>> {};

TEST_P(TrainerGpu, MatchesTheCpuTrainer) {
  HASTE_REQUIRE_GPU();
  const bool dst = GetParam().has_value();
  const Dataset train = test_util::small_synthetic(1024, 300, 256);
  const Dataset test = test_util::small_synthetic(256, 300, 256, 1024);
  ModelConfig model_config;
  model_config.hidden = {64};
  model_config.group_size = 8;
  model_config.fan_in = 32;
  model_config.head_fraction = 0.1;
  model_config.dropout = 0.1;
  TrainConfig config;
  config.epochs = 3;
  config.batch_size = 64;
  config.show_progress = false;
  config.dst.enabled = dst;
  config.dst.interval = 8;
  config.dst.regrow = GetParam().value_or(DstRegrow::random);
  ASSERT_EQ(gpu_training_unsupported(Model::build(model_config, train), config), "");

  auto run = [&](bool gpu, Model& model, std::vector<EpochReport>& reports) {
    Trainer trainer(config, model);
    auto record = [&](const EpochReport& report) { reports.push_back(report); };
    if (gpu)
      fit_on_gpu(trainer, model, train, &test, record);
    else
      trainer.fit(train, &test, record);
    EXPECT_EQ(trainer.state().epochs_done, config.epochs);
    EXPECT_EQ(trainer.optimizer().steps_taken(), trainer.steps_per_epoch(1024) * config.epochs);
  };
  Model cpu_model = Model::build(model_config, train),
        gpu_model = Model::build(model_config, train);
  std::vector<EpochReport> cpu, gpu;
  run(false, cpu_model, cpu);
  run(true, gpu_model, gpu);
  ASSERT_EQ(gpu.size(), cpu.size());
  for (size_t e = 0; e < cpu.size(); ++e) {
    EXPECT_NEAR(gpu[e].mean_loss, cpu[e].mean_loss, 0.05 * cpu[e].mean_loss) << "epoch " << e + 1;
    ASSERT_TRUE(gpu[e].metrics && cpu[e].metrics);
    for (int k : {0, 4}) {
      EXPECT_NEAR(gpu[e].metrics->precision[k], cpu[e].metrics->precision[k], 0.05)
          << "P@" << k + 1 << " epoch " << e + 1;
    }
  }
  EXPECT_GT(gpu.back().metrics->precision[0], gpu.front().metrics->precision[0] - 0.05);
  for (const NamedTensor<const float>& t : gpu_model.float_tensors()) {
    for (float x : t.data) ASSERT_TRUE(std::isfinite(x)) << t.name;
  }
  int64_t changed = 0;
  for (const EpochReport& report : gpu) changed += report.dst_changed_slots;
  if (!dst) return;
  EXPECT_GT(changed, 0);
  const GroupSharedShape tail = gpu_model.tail_shape();
  const std::span<const int32_t> indices = gpu_model.tail().indices;
  for (int64_t group = 0; group < tail.G; ++group) {
    const auto row = indices.subspan(group * tail.k, tail.k);
    EXPECT_TRUE(std::adjacent_find(row.begin(), row.end(), std::greater_equal<>()) == row.end())
        << "group " << group << " indices not sorted and distinct";
  }
}

INSTANTIATE_TEST_SUITE_P(Dst, TrainerGpu,
                         ::testing::Values(std::nullopt, DstRegrow::random, DstRegrow::gradient));

}  // namespace
}  // namespace haste
