// Optimizers against hand-computed updates, lazy rows of the sparse input layer, the
// learning-rate schedule and the optimizer config's JSON.
#include <gtest/gtest.h>

#include <cmath>
#include <haste/optimizer.hpp>
#include <nlohmann/json.hpp>

#include "model/model_test_util.hpp"
#include "test_util/expect_error.hpp"

namespace haste {
namespace {

using test_util::small_synthetic;
using test_util::tiny_config;

struct Snapshot {
  std::vector<std::vector<float>> values, grads;
};

Snapshot snapshot(Model& model) {
  Snapshot s;
  for (const Parameter& p : model.parameters()) {
    s.values.emplace_back(p.value.begin(), p.value.end());
    s.grads.emplace_back(p.grad.begin(), p.grad.end());
  }
  return s;
}

bool is_touched(const Model& model, int64_t row) {
  auto rows = model.touched_rows();
  return std::binary_search(rows.begin(), rows.end(), static_cast<int32_t>(row));
}

// Every `stride`-th entry of every parameter against expected(w, g) from the values and
// gradients before the steps; rows of the sparse input layer outside the batch against
// untouched(w): they take no gradient step.
template <typename Expected, typename Untouched>
void expect_updates(Model& model, const Snapshot& before, size_t stride, double tolerance,
                    Expected&& expected, Untouched&& untouched) {
  std::vector<Parameter> parameters = model.parameters();
  int64_t untouched_checked = 0;
  for (size_t i = 0; i < parameters.size(); ++i) {
    const Parameter& p = parameters[i];
    const int64_t width = p.shape.size() == 2 ? p.shape[1] : 1;
    for (size_t e = 0; e < p.value.size(); e += stride) {
      const double w = before.values[i][e], g = before.grads[i][e];
      const bool lazy = p.row_sparse && !is_touched(model, static_cast<int64_t>(e) / width);
      untouched_checked += lazy ? 1 : 0;
      EXPECT_NEAR(p.value[e], lazy ? untouched(w) : expected(w, g), tolerance)
          << p.name << " " << e;
    }
  }
  EXPECT_GT(untouched_checked, 0) << "the batch left no row of the sparse input layer untouched";
}

TEST(Optimizer, AdamWFirstStepsMatchHandComputation) {
  const Dataset data = small_synthetic(30, 50, 40);
  Model model = Model::build(tiny_config(), data);
  OptimizerConfig config;
  config.lr = 0.01;
  config.weight_decay = 0.1;
  Optimizer optimizer(config, model);
  const std::vector<int64_t> rows = {0, 1, 2};
  model.compute_gradients(data, rows);
  const Snapshot before = snapshot(model);
  optimizer.step(config.lr);
  // Step 1: m / (1 - b1) = g and v / (1 - b2) = g^2, so the update is g / (|g| + eps).
  // AdamW's decoupled decay shrinks the untouched rows of the sparse input layer too.
  expect_updates(
      model, before, 7, 1e-6,
      [&](double w, double g) {
        return w - config.lr * (g / (std::abs(g) + config.eps) + config.weight_decay * w);
      },
      [&](double w) { return w * (1 - config.lr * config.weight_decay); });
  EXPECT_EQ(optimizer.steps_taken(), 1);
}

TEST(Optimizer, SgdMomentumTwoSteps) {
  const Dataset data = small_synthetic(30, 50, 40);
  Model model = Model::build(tiny_config(), data);
  OptimizerConfig config;
  config.kind = OptimizerKind::sgd;
  config.lr = 0.1;
  config.momentum = 0.5;
  config.weight_decay = 0;
  Optimizer optimizer(config, model);
  const std::vector<int64_t> rows = {0, 1, 2};
  model.compute_gradients(data, rows);
  const Snapshot before = snapshot(model);
  optimizer.step(config.lr);
  optimizer.step(config.lr);  // same gradient again: buffer = g + 0.5 g
  expect_updates(
      model, before, 5, 1e-5,
      [&](double w, double g) { return w - config.lr * g - config.lr * 1.5 * g; },
      [](double w) { return w; });
}

TEST(Optimizer, StateTensorsAreNamedAfterParameters) {
  const Dataset data = small_synthetic(30, 50, 40);
  Model model = Model::build(tiny_config(), data);
  Optimizer adam(OptimizerConfig{}, model);
  auto state = adam.state_tensors();
  ASSERT_EQ(state.size(), 2 * model.parameters().size());
  EXPECT_EQ(state.front().name, "adam.m.encoder.0.weight");
  EXPECT_EQ(state.back().name, "adam.v.tail.bias");
  EXPECT_EQ(adam.state_bytes(), 2 * 4 * model.size().encoder_parameters +
                                    2 * 4 * model.size().output_layer_parameters());
}

TEST(LrSchedule, WarmupThenDecay) {
  LrSchedule s;
  s.warmup_fraction = 0.1;
  s.decay = LrDecay::linear;
  EXPECT_NEAR(s.lr_at(1.0, 0, 100), 0.1, 1e-12);
  EXPECT_NEAR(s.lr_at(1.0, 9, 100), 1.0, 1e-12);
  EXPECT_NEAR(s.lr_at(1.0, 10, 100), 1.0, 1e-12);
  EXPECT_NEAR(s.lr_at(1.0, 55, 100), 0.5, 1e-12);
  s.decay = LrDecay::cosine;
  s.final_scale = 0.1;
  EXPECT_NEAR(s.lr_at(2.0, 55, 100), 2.0 * (0.1 + 0.9 * 0.5), 1e-12);
  EXPECT_NEAR(s.lr_at(2.0, 100, 100), 0.2, 1e-12);
  s.decay = LrDecay::constant;
  EXPECT_NEAR(s.lr_at(2.0, 99, 100), 2.0, 1e-12);
}

TEST(Optimizer, ConfigJson) {
  OptimizerConfig config;
  config.kind = OptimizerKind::sgd;
  config.schedule.decay = LrDecay::cosine;
  EXPECT_EQ(OptimizerConfig::from_json(config.to_json()).to_json(), config.to_json());
  test_util::expect_error([] { OptimizerConfig::from_json({{"kind", "adagrad"}}); }, "adamw, sgd");
  test_util::expect_error([] { OptimizerConfig::from_json({{"lr", -1}}); }, "'lr'");
  test_util::expect_error(
      [] {
        OptimizerConfig::from_json({{"learning_rate", 1}});
      },
      "unknown key");
}

}  // namespace
}  // namespace haste
