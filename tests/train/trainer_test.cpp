// The training loop end to end on synthetic data: it learns, it is deterministic, and a run
// resumed from its end-of-epoch state finishes exactly like an uninterrupted one.
#include <gtest/gtest.h>

#include <haste/trainer.hpp>
#include <nlohmann/json.hpp>
#include <optional>

#include "model/model_test_util.hpp"
#include "test_util/expect_error.hpp"

namespace haste {
namespace {

struct Data {
  Dataset train = test_util::small_synthetic(2000, 400, 256);
  Dataset test = test_util::small_synthetic(500, 400, 256, 2000);
};

const Data& data() {
  static const Data d;
  return d;
}

ModelConfig model_config() {
  ModelConfig config;
  config.hidden = {64};
  config.group_size = 8;
  config.fan_in = 16;
  config.dropout = 0.1;
  return config;
}

TrainConfig train_config(int epochs) {
  TrainConfig config;
  config.epochs = epochs;
  config.batch_size = 64;
  config.optimizer.lr = 0.01;
  config.dst.enabled = true;
  config.dst.interval = 20;
  config.dst.end = 0.8;
  config.show_progress = false;
  return config;
}

std::vector<EpochReport> train(Model& model, int epochs) {
  Trainer trainer(train_config(epochs), model);
  std::vector<EpochReport> reports;
  trainer.fit(data().train, &data().test, [&](const EpochReport& r) { reports.push_back(r); });
  return reports;
}

TEST(Trainer, LearnsSyntheticDataWellAboveChance) {
  Model model = Model::build(model_config(), data().train);
  const std::vector<EpochReport> reports = train(model, 3);
  ASSERT_EQ(reports.size(), 3u);
  EXPECT_EQ(reports.back().step, 3 * 32);
  EXPECT_LT(reports.back().mean_loss, reports.front().mean_loss);
  EXPECT_GT(reports.front().dst_changed_slots, 0);
  // Chance P@1 is about labels-per-row / L = 3 / 256.
  EXPECT_GT(reports.back().metrics->precision[0], 0.4);
  EXPECT_TRUE(reports.back().metrics->has_propensity_scored);
}

TEST(Trainer, ResumedRunMatchesUninterruptedRun) {
  Model straight = Model::build(model_config(), data().train);
  const auto full = train(straight, 2);

  // A 2-epoch run stopped after its first epoch, "checkpointed" in the callback (model tensors,
  // optimizer state, trainer state), then resumed in a fresh model and trainer.
  struct Interrupt {};
  Model first = Model::build(model_config(), data().train);
  Trainer trainer(train_config(2), first);
  std::optional<Model> resumed;
  std::optional<Trainer> second;
  try {
    trainer.fit(data().train, nullptr, [&](const EpochReport&) {
      resumed.emplace(test_util::copy_model(first));
      second.emplace(train_config(2), *resumed);
      auto saved = trainer.optimizer().state_tensors();
      auto target = second->optimizer().state_tensors();
      ASSERT_EQ(saved.size(), target.size());
      for (size_t i = 0; i < saved.size(); ++i) {
        std::copy(saved[i].data.begin(), saved[i].data.end(), target[i].data.begin());
      }
      throw Interrupt{};
    });
  } catch (const Interrupt&) {
  }
  ASSERT_TRUE(second.has_value());
  second->restore(TrainerState::from_json(trainer.state().to_json()));
  std::vector<EpochReport> rest;
  second->fit(data().train, &data().test, [&](const EpochReport& r) { rest.push_back(r); });
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].epoch, 2);
  EXPECT_EQ(rest[0].mean_loss, full[1].mean_loss);
  EXPECT_EQ(rest[0].metrics->precision, full[1].metrics->precision);
  EXPECT_EQ(straight.predict(data().test, 5).labels, resumed->predict(data().test, 5).labels);
}

TEST(Trainer, ShuffleDependsOnSeedAndEpochOnly) {
  EXPECT_EQ(epoch_order(100, 1, 3), epoch_order(100, 1, 3));
  EXPECT_NE(epoch_order(100, 1, 3), epoch_order(100, 1, 4));
  EXPECT_NE(epoch_order(100, 2, 3), epoch_order(100, 1, 3));
}

TEST(Trainer, ConfigJson) {
  TrainConfig config = train_config(4);
  config.dst.regrow = DstRegrow::gradient;
  EXPECT_EQ(TrainConfig::from_json(config.to_json()).to_json(), config.to_json());
  test_util::expect_error([] { TrainConfig::from_json({{"epochs", 0}}); }, "'epochs'");
  test_util::expect_error(
      [] {
        TrainConfig::from_json({{"optimizer", {{"lr", "x"}}}});
      },
      "wrong type");
  test_util::expect_error([] { TrainConfig::from_json({{"epoch", 3}}); }, "unknown key 'epoch'");
}

}  // namespace
}  // namespace haste
