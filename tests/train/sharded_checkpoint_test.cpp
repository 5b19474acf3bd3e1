// Label-sharded checkpoints: a run trained on 2 shards saves one file per shard and an index;
// the checkpoint loads on 1 and on 3 shards with the same predictions, resumes on another
// shard count, and replaces (or is replaced by) an unsharded checkpoint in the same directory.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <haste/checkpoint.hpp>
#include <haste/trainer.hpp>
#include <string>
#include <vector>

#include "model/model_test_util.hpp"
#include "test_util/expect_error.hpp"

namespace haste {
namespace {

namespace fs = std::filesystem;

struct Data {
  Dataset train = test_util::small_synthetic(800, 200, 120);
  Dataset test = test_util::small_synthetic(200, 200, 120, 800);
};

const Data& data() {
  static const Data d;
  return d;
}

ModelConfig model_config() {
  ModelConfig config;
  config.hidden = {32};
  config.group_size = 4;
  config.fan_in = 8;
  config.head_fraction = 0.2;
  return config;
}

TrainConfig train_config(int epochs, int shards) {
  TrainConfig config;
  config.epochs = epochs;
  config.batch_size = 64;
  config.shards = shards;
  config.eval_each_epoch = false;
  config.show_progress = false;
  return config;
}

class ShardedCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("haste-sharded-ckpt-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::vector<std::string> files() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir_)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  fs::path dir_;
};

TEST_F(ShardedCheckpoint, LoadsOnAnyNumberOfShardsWithTheSamePredictions) {
  Model model = Model::build(model_config(), data().train);
  Trainer trainer(train_config(2, 2), model);
  trainer.fit(data().train, nullptr);
  save_run_checkpoint(dir_, model, 2, &trainer);
  const int64_t step = trainer.state().steps_done;
  EXPECT_EQ(files(), (std::vector<std::string>{
                         "model-step" + std::to_string(step) + "-shard0-of2.safetensors",
                         "model-step" + std::to_string(step) + "-shard1-of2.safetensors",
                         kShardIndexFileName}));
  // Shard 1 holds only its rows of the label-split tensors.
  const SafetensorsFile second(dir_ /
                               ("model-step" + std::to_string(step) + "-shard1-of2.safetensors"));
  EXPECT_EQ(second.find("encoder.0.weight"), nullptr);
  EXPECT_LT(second.get("head.weight").shape[0], model.shape().head_labels);
  EXPECT_LT(second.get("tail.indices").shape[0], model.shape().groups);

  const Rankings expected = model.predict(data().test, 5);
  const Checkpoint checkpoint(dir_);
  EXPECT_EQ(checkpoint.shards(), 2);
  for (int shards : {1, 3}) {
    Model loaded = checkpoint.load_model();
    loaded.set_label_shards(shards);
    const Rankings got = loaded.predict(data().test, 5);
    EXPECT_EQ(got.labels, expected.labels) << shards << " shards";
    EXPECT_EQ(got.scores, expected.scores) << shards << " shards";
  }
  // The index itself names the checkpoint too.
  EXPECT_EQ(Checkpoint(dir_ / kShardIndexFileName).load_model().predict(data().test, 5).labels,
            expected.labels);
}

TEST_F(ShardedCheckpoint, ResumesOnAnotherShardCount) {
  Model whole = Model::build(model_config(), data().train);
  Trainer uninterrupted(train_config(3, 2), whole);
  std::vector<double> expected;
  uninterrupted.fit(data().train, nullptr,
                    [&](const EpochReport& r) { expected.push_back(r.mean_loss); });

  // The same 3-epoch run, checkpointed on 2 shards after epoch 2 and stopped there.
  struct Interrupt {};
  Model first = Model::build(model_config(), data().train);
  Trainer part(train_config(3, 2), first);
  try {
    part.fit(data().train, nullptr, [&](const EpochReport& r) {
      save_run_checkpoint(dir_, first, 2, &part);
      if (r.epoch == 2) throw Interrupt{};
    });
  } catch (const Interrupt&) {
  }

  const Checkpoint checkpoint(dir_);
  Model resumed = checkpoint.load_model();
  TrainConfig config = checkpoint.train_config();
  config.shards = 3;
  Trainer rest(config, resumed);
  checkpoint.restore_training(rest);
  std::vector<double> losses;
  rest.fit(data().train, nullptr, [&](const EpochReport& r) { losses.push_back(r.mean_loss); });
  ASSERT_EQ(losses.size(), 1u);
  EXPECT_NEAR(losses[0], expected[2], 1e-4 * expected[2]);
}

TEST_F(ShardedCheckpoint, ReplacesAndIsReplacedByAnUnshardedCheckpoint) {
  Model model = Model::build(model_config(), data().train);
  save_run_checkpoint(dir_, model, 1);
  EXPECT_EQ(files(), std::vector<std::string>{kCheckpointFileName});
  save_run_checkpoint(dir_, model, 3);
  EXPECT_EQ(files().size(), 4u);
  EXPECT_FALSE(fs::exists(dir_ / kCheckpointFileName));
  EXPECT_EQ(Checkpoint(dir_).shards(), 3);
  save_run_checkpoint(dir_, model, 1);
  EXPECT_EQ(files(), std::vector<std::string>{kCheckpointFileName});
}

TEST_F(ShardedCheckpoint, AMissingShardFileIsNamed) {
  Model model = Model::build(model_config(), data().train);
  save_run_checkpoint(dir_, model, 2);
  const fs::path missing = dir_ / "model-step0-shard1-of2.safetensors";
  ASSERT_TRUE(fs::exists(missing));
  fs::remove(missing);
  test_util::expect_error([&] { Checkpoint{dir_}; }, missing.filename().string());
}

}  // namespace
}  // namespace haste
