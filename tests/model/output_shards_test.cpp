// The label-sharded output layer (DESIGN.md 11) against the unsharded one: how labels are split,
// one training step's loss and gradients, predictions, and whole training runs (with DST and
// dropout) that must end with the same losses and metrics within floating-point summation noise.
#include <gtest/gtest.h>

#include <cmath>
#include <haste/shard/label_shards.hpp>
#include <haste/trainer.hpp>
#include <vector>

#include "model/model_test_util.hpp"

namespace haste {
namespace {

TEST(LabelShards, ContiguousStretchesInRankOrderDifferingByAtMostOne) {
  for (int P : {1, 2, 3, 5, 8}) {
    for (auto [H, G] : {std::pair<int64_t, int64_t>{10, 7}, {0, 4}, {32, 0}, {3, 2}}) {
      const std::vector<shard::LabelShard> shards = shard::split_labels(H, G, P);
      ASSERT_EQ(static_cast<int>(shards.size()), P);
      int64_t head = 0, group = 0;
      for (const shard::LabelShard& s : shards) {
        EXPECT_EQ(s.head_begin, head);
        EXPECT_EQ(s.group_begin, group);
        EXPECT_LE(std::abs(s.head_labels() - shards[0].head_labels()), 1);
        EXPECT_LE(std::abs(s.groups() - shards[0].groups()), 1);
        head = s.head_end;
        group = s.group_end;
      }
      EXPECT_EQ(head, H);
      EXPECT_EQ(group, G);
    }
  }
}

TEST(LabelShards, ShardLabelNumbersEachLabelInItsOwnShardOnly) {
  const int64_t H = 10, G = 7, g = 4;
  const std::vector<shard::LabelShard> shards = shard::split_labels(H, G, 3);
  for (int64_t label = 0; label < H + G * g; ++label) {
    int owners = 0;
    for (const shard::LabelShard& s : shards) {
      const int32_t id = shard::shard_label(s, label, H, g);
      if (id < 0) continue;
      ++owners;
      // Head labels first, then the shard's slots, in the model's order.
      if (label < H) {
        EXPECT_EQ(id, label - s.head_begin);
      } else {
        EXPECT_EQ(id, s.head_labels() + (label - H) - s.group_begin * g);
      }
      EXPECT_LT(id, s.head_labels() + s.groups() * g);
    }
    EXPECT_EQ(owners, 1) << "label " << label;
  }
  const auto rows = shard::label_rows(shards[1], "adam.m.tail.weight", g);
  ASSERT_TRUE(rows.has_value());
  EXPECT_EQ(rows->first, shards[1].group_begin * g);
  EXPECT_FALSE(shard::label_rows(shards[1], "encoder.0.weight", g).has_value());
}

void expect_close(std::span<const float> a, std::span<const float> b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_NEAR(a[i], b[i], 1e-5f + 1e-4f * std::abs(b[i])) << what << " [" << i << "]";
  }
}

ModelConfig small_config(bool private_features) {
  ModelConfig config;
  config.hidden = {32};
  config.group_size = 4;
  config.fan_in = 8;
  config.head_fraction = 0.15;
  config.dropout = 0.2;
  config.private_features = private_features;
  return config;
}

TEST(OutputShards, OneStepMatchesTheUnshardedModel) {
  const Dataset data = test_util::small_synthetic(200, 100, 90);
  const std::vector<int64_t> rows = test_util::first_rows(48);
  for (bool private_features : {false, true}) {
    Model one = Model::build(small_config(private_features), data);
    const double loss = one.compute_gradients(data, rows, 5);
    // P = 40 leaves some shards without head labels or without groups.
    for (int P : {2, 3, 7, 40}) {
      Model sharded = test_util::copy_model(one);
      sharded.set_label_shards(P);
      ASSERT_EQ(sharded.label_shards(), P);
      const double sharded_loss = sharded.compute_gradients(data, rows, 5);
      EXPECT_NEAR(sharded_loss, loss, 1e-6 * loss) << "P = " << P;
      std::vector<Parameter> expected = one.parameters(), got = sharded.parameters();
      ASSERT_EQ(expected.size(), got.size());
      for (size_t i = 0; i < expected.size(); ++i) {
        if (expected[i].row_sparse) {
          for (int32_t row : one.touched_rows()) {
            const int64_t n = expected[i].shape[1];
            expect_close(got[i].grad.subspan(row * n, n), expected[i].grad.subspan(row * n, n),
                         expected[i].name);
          }
        } else {
          expect_close(got[i].grad, expected[i].grad, expected[i].name);
        }
      }
      const TailBatch a = one.last_tail_batch(), b = sharded.last_tail_batch();
      expect_close(b.dz, a.dz, "tail dz");

      const Rankings want = one.predict(data, 5), have = sharded.predict(data, 5);
      EXPECT_EQ(have.labels, want.labels) << "P = " << P;
      expect_close(have.scores, want.scores, "scores");
    }
  }
}

struct TrainedRun {
  std::vector<EpochReport> reports;
  Rankings predictions;
};

TrainedRun train(int shards) {
  static const Dataset train_set = test_util::small_synthetic(1500, 300, 200);
  static const Dataset test_set = test_util::small_synthetic(400, 300, 200, 1500);
  ModelConfig model_config = small_config(false);
  model_config.hidden = {64};
  model_config.fan_in = 16;
  TrainConfig config;
  config.epochs = 3;
  config.batch_size = 64;
  config.dst.enabled = true;
  config.dst.regrow = DstRegrow::gradient;
  config.dst.interval = 10;
  config.show_progress = false;
  config.shards = shards;
  Model model = Model::build(model_config, train_set);
  Trainer trainer(config, model);
  TrainedRun run;
  trainer.fit(train_set, &test_set, [&](const EpochReport& r) { run.reports.push_back(r); });
  run.predictions = model.predict(test_set, 5);
  return run;
}

TEST(OutputShards, ShardedTrainingMatchesUnshardedTraining) {
  const TrainedRun one = train(1);
  for (int P : {2, 3}) {
    const TrainedRun sharded = train(P);
    ASSERT_EQ(sharded.reports.size(), one.reports.size());
    for (size_t e = 0; e < one.reports.size(); ++e) {
      const EpochReport &a = one.reports[e], &b = sharded.reports[e];
      EXPECT_NEAR(b.mean_loss, a.mean_loss, 1e-4 * a.mean_loss) << "P " << P << " epoch " << e;
      EXPECT_EQ(b.dst_changed_slots, a.dst_changed_slots);
      ASSERT_TRUE(a.metrics && b.metrics);
      for (int k : {0, 4}) {
        EXPECT_NEAR(b.metrics->precision[k], a.metrics->precision[k], 0.005)
            << "P@" << k + 1 << ", P " << P << " epoch " << e;
      }
    }
  }
}

}  // namespace
}  // namespace haste
