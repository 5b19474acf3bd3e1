// The CPU model: gradients by finite differences, label renumbering, the dense output as "all
// labels in the head", rebuilding from tensors, configs as JSON.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <haste/model.hpp>
#include <nlohmann/json.hpp>
#include <set>

#include "model/model_test_util.hpp"
#include "test_util/expect_error.hpp"

namespace haste {
namespace {

using test_util::first_rows;
using test_util::small_synthetic;
using test_util::tiny_config;

// Compares every parameter's gradient, at a sample of entries, with central differences of
// the loss. fp32 model: a large step and loose bounds.
void check_gradients(Model& model, const Dataset& data, std::span<const int64_t> rows) {
  model.compute_gradients(data, rows);
  std::vector<std::vector<float>> analytic;
  for (const Parameter& p : model.parameters()) analytic.emplace_back(p.grad.begin(), p.grad.end());
  const auto touched =
      std::vector<int32_t>(model.touched_rows().begin(), model.touched_rows().end());
  ASSERT_EQ(touched.empty(), !model.shape().sparse_input);
  std::vector<Parameter> parameters = model.parameters();
  int checked = 0;
  for (size_t i = 0; i < parameters.size(); ++i) {
    const Parameter& p = parameters[i];
    const auto size = static_cast<int64_t>(p.value.size());
    std::vector<int64_t> entries;
    for (int64_t e = 0; e < size; e += std::max<int64_t>(1, size / 23)) entries.push_back(e);
    if (p.row_sparse) {  // the touched rows hold the gradient: sample them too
      for (int32_t row : touched) entries.push_back(int64_t{row} * p.shape[1] + row % p.shape[1]);
    }
    for (int64_t e : entries) {
      const float saved = p.value[e];
      const float eps = 1e-2f;
      p.value[e] = saved + eps;
      const double up = model.compute_gradients(data, rows);
      p.value[e] = saved - eps;
      const double down = model.compute_gradients(data, rows);
      p.value[e] = saved;
      const double numeric = (up - down) / (2.0 * eps);
      EXPECT_NEAR(analytic[i][e], numeric, 2e-3 + 2e-2 * std::abs(numeric))
          << p.name << " entry " << e;
      ++checked;
    }
  }
  EXPECT_GT(checked, 100);
}

TEST(Model, GradientsMatchFiniteDifferences) {
  const Dataset data = small_synthetic(40, 50, 48);
  const std::vector<int64_t> rows = {3, 1, 4, 15, 9, 26, 5, 35};
  Model model = Model::build(tiny_config(), data);
  ASSERT_GT(model.shape().groups, 0);
  ASSERT_GT(model.shape().head_labels, 0);
  check_gradients(model, data, rows);
}

TEST(Model, GradientsWithPrivateFeaturesAndTwoLayers) {
  const Dataset data = small_synthetic(40, 50, 48);
  ModelConfig config = tiny_config();
  config.hidden = {12, 10};
  config.private_features = true;
  config.fan_in = 3;
  Model model = Model::build(config, data);
  check_gradients(model, data, first_rows(10));
}

TEST(Model, GradientsWithDenseInputs) {
  Dataset data = small_synthetic(30, 20, 24);
  data.dense.rows = data.features.rows;
  data.dense.cols = data.features.cols;
  data.dense.data.assign(data.dense.rows * data.dense.cols, 0.0f);
  for (int64_t r = 0; r < data.features.rows; ++r) {
    auto idx = data.features.row_indices(r);
    auto val = data.features.row_values(r);
    for (size_t i = 0; i < idx.size(); ++i) data.dense.data[r * data.dense.cols + idx[i]] = val[i];
  }
  data.features = CsrMatrix{};
  Model model = Model::build(tiny_config(), data);
  EXPECT_FALSE(model.shape().sparse_input);
  check_gradients(model, data, first_rows(6));
}

// Row i carries feature i only and label (7 i) mod L: a model that fits it must predict each
// row's own original label, whatever its internal numbering.
TEST(Model, PredictionsUseOriginalLabelIds) {
  const int64_t n = 48;
  Dataset data;
  data.features.cols = n;
  data.labels.cols = n;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t feature = static_cast<int32_t>(i), label = static_cast<int32_t>((7 * i) % n);
    const float one = 1.0f;
    data.features.append_row({&feature, 1}, {&one, 1});
    data.labels.append_row({&label, 1}, {});
  }
  ModelConfig config = tiny_config();
  config.hidden = {16};
  config.fan_in = 8;
  config.activation = Activation::relu;
  Model model = Model::build(config, data);
  // Renumbering is a permutation and not the identity (tail labels are grouped).
  const auto tensors = model.int_tensors();
  const auto& map = tensors.back();
  ASSERT_EQ(map.name, "labels.model_to_original");
  std::set<int32_t> ids(map.data.begin(), map.data.end());
  EXPECT_EQ(static_cast<int64_t>(ids.size()), n);

  // Plain gradient descent on the full batch until it fits.
  const std::vector<int64_t> rows = first_rows(n);
  for (int step = 0; step < 400; ++step) {
    model.compute_gradients(data, rows);
    for (const Parameter& p : model.parameters()) {
      for (size_t e = 0; e < p.value.size(); ++e) p.value[e] -= 0.5f * p.grad[e];
    }
  }
  const Rankings predicted = model.predict(data, 1);
  int correct = 0;
  for (int64_t i = 0; i < n; ++i) correct += predicted.row(i)[0] == (7 * i) % n;
  EXPECT_GE(correct, n - 2);
}

TEST(Model, DenseOutputIsEveryLabelInTheHead) {
  const Dataset data = small_synthetic(60, 50, 40);
  ModelConfig dense = tiny_config();
  dense.output = OutputKind::dense;
  ModelConfig all_head = tiny_config();
  all_head.head_rule = HeadRule::count;
  all_head.head_count = 40;
  Model a = Model::build(dense, data);
  Model b = Model::build(all_head, data);
  EXPECT_EQ(a.shape().head_labels, 40);
  EXPECT_EQ(a.shape().groups, 0);
  EXPECT_EQ(b.shape().groups, 0);
  const std::vector<int64_t> rows = first_rows(20);
  EXPECT_DOUBLE_EQ(a.compute_gradients(data, rows), b.compute_gradients(data, rows));
  EXPECT_EQ(a.predict(data, 5).labels, b.predict(data, 5).labels);
  // The HASTE output layer of the default config is far smaller.
  EXPECT_EQ(a.size().output_layer_parameters(), 40 * 9);
}

TEST(Model, KeepsTheTailGradientOnlyWhenAsked) {
  const Dataset data = small_synthetic(60, 50, 40);
  Model model = Model::build(tiny_config(), data);
  ASSERT_GT(model.tail_shape().G, 0);
  const std::vector<int64_t> rows = first_rows(20);
  const double kept_loss = model.compute_gradients(data, rows);  // kept by default
  const TailBatch kept = model.last_tail_batch();
  EXPECT_EQ(kept.dz.size(), static_cast<size_t>(20 * model.tail_shape().labels()));
  model.keep_tail_dz(false);
  // The same loss and batch input without the copy; only the gradient is left out.
  EXPECT_DOUBLE_EQ(model.compute_gradients(data, rows), kept_loss);
  const TailBatch skipped = model.last_tail_batch();
  EXPECT_TRUE(skipped.dz.empty());
  EXPECT_EQ(skipped.h.size(), kept.h.size());
}

TEST(Model, RebuiltFromTensorsPredictsTheSame) {
  const Dataset data = small_synthetic(60, 50, 40);
  Model model = Model::build(tiny_config(), data);
  Model copy = test_util::copy_model(model);
  EXPECT_EQ(model.predict(data, 5).labels, copy.predict(data, 5).labels);
  EXPECT_EQ(model.size().total_bytes(), copy.size().total_bytes());
}

TEST(Model, SizeReportCountsEveryPart) {
  const Dataset data = small_synthetic(60, 50, 40);
  Model model = Model::build(tiny_config(), data);
  const ModelSize size = model.size();
  const ModelShape& s = model.shape();
  EXPECT_EQ(size.encoder_parameters, 50 * 8 + 8);
  EXPECT_EQ(size.head_parameters, s.head_labels * 9);
  EXPECT_EQ(size.tail_parameters, s.tail_slots() * 5);
  EXPECT_EQ(size.tail_index_bytes, s.groups * 4 * 4);
  int64_t sum = 0;
  for (const auto& [name, bytes] : size.parts()) sum += bytes;
  EXPECT_EQ(sum, size.total_bytes());
}

TEST(Model, PaddingLabelsAreNeverPredicted) {
  const Dataset data = small_synthetic(60, 50, 37);  // 37 - 8 head = 29 tail: 3 padding slots
  Model model = Model::build(tiny_config(), data);
  ASSERT_GT(model.shape().tail_slots(), model.shape().tail_labels());
  // Give the padding slots huge biases: they still must not appear.
  auto& bias = model.tail().bias;
  for (int64_t s = model.shape().tail_labels(); s < model.shape().tail_slots(); ++s) bias[s] = 1e6f;
  const Rankings r = model.predict(data, 5);
  for (int32_t label : r.labels) EXPECT_LT(label, 37);
  // Scores are the logits, best first; no padding slot's 1e6 among them.
  ASSERT_TRUE(r.has_scores());
  for (int64_t row = 0; row < r.rows; ++row) {
    auto scores = r.row_scores(row);
    EXPECT_TRUE(std::is_sorted(scores.begin(), scores.end(), std::greater<>()));
    for (float score : scores) EXPECT_LT(score, 1e5f);
  }
}

TEST(Model, ConfigJsonRoundTripAndErrors) {
  ModelConfig config = tiny_config();
  config.hidden = {32, 16};
  config.output = OutputKind::dense;
  config.dropout = 0.25;
  const ModelConfig back = ModelConfig::from_json(config.to_json());
  EXPECT_EQ(back.to_json(), config.to_json());
  test_util::expect_error([] { ModelConfig::from_json({{"hiden", {8}}}); }, "unknown key 'hiden'");
  test_util::expect_error([] { ModelConfig::from_json({{"activation", "gelu"}}); }, "relu, tanh");
  test_util::expect_error([] { ModelConfig::from_json({{"dropout", 1.5}}); }, "dropout");
  test_util::expect_error([] { ModelConfig::from_json({{"group_size", "big"}}); }, "wrong type");
  test_util::expect_error(
      [] {
        ModelConfig::from_json({{"hidden", {16}}, {"fan_in", 64}});
      },
      "fan-in k = 64");
  const ModelShape shape{true, 10, 20, 4, 4, 4, 4};
  EXPECT_EQ(ModelShape::from_json(shape.to_json()).to_json(), shape.to_json());
}

TEST(Model, RejectsMismatchedInputs) {
  const Dataset data = small_synthetic(30, 50, 40);
  Model model = Model::build(tiny_config(), data);
  const Dataset other = small_synthetic(30, 60, 40);
  test_util::expect_error([&] { model.predict(other, 5); }, "expects 50 input features");
  test_util::expect_error([&] { model.predict(data, 0); }, "k = 0");
}

}  // namespace
}  // namespace haste
