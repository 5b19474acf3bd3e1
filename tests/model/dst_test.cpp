// DST on groups: indices change, stay sorted, distinct and k per group; weights and optimizer
// state move with their features; regrown slots start at zero; the kernels keep working.
#include <gtest/gtest.h>

#include <cmath>
#include <haste/dst.hpp>
#include <map>
#include <nlohmann/json.hpp>

#include "model/model_test_util.hpp"
#include "test_util/expect_error.hpp"

namespace haste {
namespace {

using test_util::small_synthetic;

ModelConfig dst_config() {
  ModelConfig config;
  config.hidden = {32};
  config.group_size = 4;
  config.fan_in = 8;
  config.head_fraction = 0.1;
  return config;
}

// (group, feature) -> weight of the group's first label.
std::map<std::pair<int64_t, int32_t>, float> weights_by_feature(const Model& model) {
  std::map<std::pair<int64_t, int32_t>, float> out;
  const auto& tail = model.tail();
  for (int64_t group = 0; group < tail.shape.G; ++group) {
    for (int64_t j = 0; j < tail.shape.k; ++j) {
      out[{group, tail.indices[group * tail.shape.k + j]}] =
          tail.weights[group * tail.shape.g * tail.shape.k + j];
    }
  }
  return out;
}

void run_dst(DstPrune prune, DstRegrow regrow) {
  const Dataset data = small_synthetic(80, 60, 64);
  Model model = Model::build(dst_config(), data);
  Optimizer optimizer(OptimizerConfig{}, model);
  const std::vector<int64_t> rows = test_util::first_rows(32);
  model.compute_gradients(data, rows);
  optimizer.step(1e-2);
  const std::vector<int32_t> before(model.tail().indices);
  const auto weights_before = weights_by_feature(model);

  const DstResult result = apply_dst(model, optimizer, prune, regrow, 0.5, 99);
  const GroupSharedShape s = model.tail_shape();
  EXPECT_GT(result.changed_slots, 0);
  EXPECT_NE(model.tail().indices, before);
  validate_group_indices(s, model.tail().indices);  // sorted, distinct, in range, k per group
  EXPECT_EQ(result.changed_slots, s.G * s.k / 2);   // both rules: half of all slots here

  // Kept features keep their weights; new ones start at zero with zero optimizer state.
  const auto weights_after = weights_by_feature(model);
  NamedTensor<float> adam_m;
  for (auto& t : optimizer.state_tensors()) {
    if (t.name == "adam.m.tail.weight") adam_m = t;
  }
  for (int64_t group = 0; group < s.G; ++group) {
    for (int64_t j = 0; j < s.k; ++j) {
      const int32_t f = model.tail().indices[group * s.k + j];
      auto old = weights_before.find({group, f});
      const float w = weights_after.at({group, f});
      const float m = adam_m.data[group * s.g * s.k + j];
      if (old == weights_before.end()) {
        EXPECT_EQ(w, 0.0f);
        EXPECT_EQ(m, 0.0f);
      } else {
        EXPECT_EQ(w, old->second);
      }
    }
  }
  // Forward and backward still run and stay finite.
  const double loss = model.compute_gradients(data, rows);
  EXPECT_TRUE(std::isfinite(loss));
  optimizer.step(1e-2);
  EXPECT_EQ(model.predict(data, 5).rows, data.num_points());
}

TEST(Dst, GlobalPruneRandomRegrow) { run_dst(DstPrune::global, DstRegrow::random); }
TEST(Dst, GroupNormPruneGradientRegrow) { run_dst(DstPrune::group_norm, DstRegrow::gradient); }

TEST(Dst, GradientRegrowPicksTheLargestGroupGradient) {
  const Dataset data = small_synthetic(80, 60, 64);
  Model model = Model::build(dst_config(), data);
  Optimizer optimizer(OptimizerConfig{}, model);
  model.compute_gradients(data, test_util::first_rows(32));
  const TailBatch batch = model.last_tail_batch();
  const GroupSharedShape s = model.tail_shape();
  // Reference for group 0: the best feature not in idx[0] by ||(dZg^T h)[:, f]||.
  const std::vector<int32_t> old(model.tail().indices.begin(), model.tail().indices.begin() + s.k);
  int32_t best = -1;
  double best_norm = -1;
  for (int32_t f = 0; f < s.d; ++f) {
    if (std::find(old.begin(), old.end(), f) != old.end()) continue;
    double norm = 0;
    for (int64_t l = 0; l < s.g; ++l) {
      double sum = 0;
      for (int64_t b = 0; b < batch.B; ++b)
        sum += batch.dz[b * s.labels() + l] * batch.h[b * s.d + f];
      norm += sum * sum;
    }
    if (norm > best_norm) best_norm = norm, best = f;
  }
  apply_dst(model, optimizer, DstPrune::group_norm, DstRegrow::gradient, 0.2, 1);
  const std::span<const int32_t> now(model.tail().indices.data(), s.k);
  EXPECT_NE(std::find(now.begin(), now.end(), best), now.end());
}

TEST(Dst, ScheduleAndConfig) {
  DstConfig config;
  config.enabled = true;
  config.fraction = 0.4;
  config.interval = 10;
  config.end = 0.5;
  EXPECT_NEAR(config.fraction_at(0, 100), 0.4, 1e-12);
  EXPECT_NEAR(config.fraction_at(25, 100), 0.2, 1e-12);
  EXPECT_EQ(config.fraction_at(50, 100), 0.0);
  EXPECT_TRUE(config.due(10, 100));
  EXPECT_FALSE(config.due(15, 100));
  EXPECT_FALSE(config.due(50, 100));
  EXPECT_EQ(DstConfig::from_json(config.to_json()).to_json(), config.to_json());
  test_util::expect_error(
      [] {
        DstConfig::from_json({{"prune", "magnitude"}});
      },
      "global, group_norm");
  test_util::expect_error([] { DstConfig::from_json({{"interval", 0}}); }, "'interval'");
}

}  // namespace
}  // namespace haste
