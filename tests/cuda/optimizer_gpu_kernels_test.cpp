// The GPU optimizer against the CPU Optimizer (src/model/optimizer.cpp) on a small model's real
// gradients: fp32 parameters dense and lazy row-sparse (the sparse input layer, rows and row
// count on the device) over several steps; bf16 parameters with stochastic rounding land on one
// of the two bf16 neighbours of the CPU's fp32 result, and the rounding is unbiased (a mean over
// many elements against a 5-sigma bound); the DST slot remap against the CPU's. Outputs the
// kernels write are poisoned with NaN first. Skipped without a GPU.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <haste/cuda/device_buffer.hpp>
#include <haste/cuda/optimizer_gpu.hpp>
#include <haste/optimizer.hpp>
#include <tuple>
#include <vector>

#include "model/model_test_util.hpp"
#include "model/slot_remap.hpp"
#include "test_util/gpu.hpp"
#include "test_util/gpu_compare.hpp"
#include "test_util/random_tensors.hpp"

namespace haste {
namespace {

using cuda::bf16;
using cuda::DeviceBuffer;
using test_util::to_double;

std::vector<double> to_double(std::span<const float> values) {
  return {values.begin(), values.end()};
}

// The two bf16 values around x (equal when x is one).
std::pair<float, float> bf16_neighbours(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  const uint32_t down_bits = bits & 0xffff0000u, up_bits = down_bits + 0x10000u;
  float down, up;
  std::memcpy(&down, &down_bits, 4);
  std::memcpy(&up, &up_bits, 4);
  if (down == x) up = x;
  return {std::min(down, up), std::max(down, up)};
}

OptimizerConfig config_of(OptimizerKind kind) {
  OptimizerConfig config;
  config.kind = kind;
  config.lr = 0.02;
  config.weight_decay = 0.1;
  return config;
}

// A small model with a sparse input layer, and batches that touch different input rows.
struct SmallModel {
  Dataset data = test_util::small_synthetic(60, 80, 48);
  Model model = Model::build(test_util::tiny_config(), data);
  std::vector<int64_t> batch(int step) const { return {3 * step, 3 * step + 1, 40 - step}; }
};

class OptimizerGpuFp32 : public ::testing::TestWithParam<OptimizerKind> {};

// Three steps: CPU gradients each step, the GPU updating its own copy of every parameter (dense,
// or only the touched rows of encoder.0.weight from a compact gradient), compared after each.
TEST_P(OptimizerGpuFp32, MatchesTheCpuOptimizer) {
  HASTE_REQUIRE_GPU();
  SmallModel small;
  const OptimizerConfig config = config_of(GetParam());
  Optimizer cpu(config, small.model);
  cuda::OptimizerGpu gpu(config);

  std::vector<DeviceBuffer<float>> values;
  std::vector<int> handles;
  for (const Parameter& p : small.model.parameters()) {
    values.emplace_back(std::vector<float>(p.value.begin(), p.value.end()));
    handles.push_back(gpu.add(p.name, p.shape));
  }
  for (int step = 0; step < 3; ++step) {
    small.model.compute_gradients(small.data, small.batch(step));
    const double lr = config.lr * (1.0 + 0.5 * step);
    gpu.begin_step(lr);
    std::vector<Parameter> parameters = small.model.parameters();
    for (size_t i = 0; i < parameters.size(); ++i) {
      const Parameter& p = parameters[i];
      if (!p.row_sparse) {
        DeviceBuffer<float> grad(std::vector<float>(p.grad.begin(), p.grad.end()));
        gpu.update(handles[i], values[i].data(), grad.data(), nullptr);
        continue;
      }
      const std::span<const int32_t> rows = small.model.touched_rows();
      const int64_t width = p.shape[1];
      // The compact gradient has spare rows (NaN) past the count: they must not be read.
      const auto max_rows = static_cast<int64_t>(rows.size()) + 3;
      std::vector<float> compact(max_rows * width, NAN);
      std::vector<int32_t> row_list(max_rows, -1);
      for (size_t u = 0; u < rows.size(); ++u) {
        std::copy_n(p.grad.begin() + rows[u] * width, width, compact.begin() + u * width);
        row_list[u] = rows[u];
      }
      DeviceBuffer<float> grad(compact);
      DeviceBuffer<int32_t> d_rows(row_list);
      DeviceBuffer<int32_t> count(std::vector<int32_t>{static_cast<int32_t>(rows.size())});
      gpu.update_rows(handles[i], values[i].data(), grad.data(), d_rows.data(), count.data(),
                      max_rows, nullptr);
    }
    cpu.step(lr);
    for (size_t i = 0; i < parameters.size(); ++i) {
      EXPECT_LT(test_util::relative_error(to_double(values[i].download()),
                                          to_double(parameters[i].value)),
                1e-6)
          << parameters[i].name << " after step " << step + 1;
    }
  }
  // The state too: download into a fresh CPU optimizer and compare with the CPU's own.
  Optimizer copy(config, small.model);
  gpu.download(copy);
  EXPECT_EQ(copy.steps_taken(), 3);
  auto expected = cpu.state_tensors(), got = copy.state_tensors();
  ASSERT_EQ(expected.size(), got.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_LT(test_util::relative_error(to_double(got[i].data), to_double(expected[i].data)), 1e-5)
        << got[i].name;
  }
}

INSTANTIATE_TEST_SUITE_P(Kinds, OptimizerGpuFp32,
                         ::testing::Values(OptimizerKind::adamw, OptimizerKind::sgd));

class OptimizerGpuBf16 : public ::testing::TestWithParam<std::tuple<OptimizerKind, bool>> {};

// bf16 weights (bf16 or fp32 gradients): every updated weight is one of the two bf16 neighbours
// of the CPU's fp32 update of the same weight, and the state is the CPU's.
TEST_P(OptimizerGpuBf16, RoundsTheCpuUpdateToANeighbour) {
  HASTE_REQUIRE_GPU();
  const auto [kind, bf16_grad] = GetParam();
  const int64_t n = 20000;
  test_util::RandomTensors random(bf16_grad ? 11 : 12);
  std::vector<double> w = random.tensor<double>(n), g = random.tensor<double>(n, -0.1, 0.1);
  const std::vector<bf16> w_bf16 = test_util::round_to_bf16(w),
                          g_bf16 = test_util::round_to_bf16(g);

  // The CPU Optimizer's first step from zero state written out in fp32 (it needs a Model; the
  // fp32 test above holds the GPU arithmetic to the Optimizer itself).
  const OptimizerConfig config = config_of(kind);
  const cuda::UpdateScalars s = cuda::UpdateScalars::of(config, config.lr, 1, 99);
  std::vector<float> expected(n), expected_first(n);
  for (int64_t i = 0; i < n; ++i) {
    const auto wi = static_cast<float>(w[i]), gi = static_cast<float>(g[i]);
    if (kind == OptimizerKind::adamw) {
      const float m = (1 - s.beta1) * gi, v = (1 - s.beta2) * gi * gi;
      const auto correction1 = static_cast<float>(1 - config.beta1),
                 correction2 = static_cast<float>(1 - config.beta2);  // step 1
      const float update = (m / correction1) / (std::sqrt(v / correction2) + s.eps);
      expected[i] = wi - s.lr * (update + s.weight_decay * wi);
      expected_first[i] = m;
    } else {
      expected_first[i] = gi + s.weight_decay * wi;
      expected[i] = wi - s.lr * expected_first[i];
    }
  }

  DeviceBuffer<bf16> d_w(w_bf16), d_g_bf16(g_bf16);
  DeviceBuffer<float> d_g_fp32(std::vector<float>(g.begin(), g.end()));
  DeviceBuffer<float> first(std::vector<float>(n, 0.0f)), second(std::vector<float>(n, 0.0f));
  const cuda::OptimizerStateDevice state{first.data(),
                                         kind == OptimizerKind::adamw ? second.data() : nullptr};
  if (bf16_grad) {
    cuda::optimizer_update(s, d_w.data(), d_g_bf16.data(), state, n, 0, nullptr);
  } else {
    cuda::optimizer_update(s, d_w.data(), d_g_fp32.data(), state, n, 0, nullptr);
  }
  const std::vector<double> got = to_double(d_w.download());
  int64_t outside = 0;
  for (int64_t i = 0; i < n; ++i) {
    // The GPU's AdamW divides once, fast (a few ulp from the CPU's fp32 result): the bf16
    // neighbours of the values 4 fp32 ulp either side are allowed too.
    float low = expected[i], high = expected[i];
    for (int ulp = 0; ulp < 4; ++ulp) {
      low = std::nextafter(low, -INFINITY);
      high = std::nextafter(high, INFINITY);
    }
    if (!(got[i] >= bf16_neighbours(low).first && got[i] <= bf16_neighbours(high).second))
      ++outside;
  }
  EXPECT_EQ(outside, 0) << "updated weights not next to the CPU's update";
  EXPECT_LT(
      test_util::relative_error(to_double(first.download()),
                                std::vector<double>(expected_first.begin(), expected_first.end())),
      1e-6);
}

INSTANTIATE_TEST_SUITE_P(KindsAndGradients, OptimizerGpuBf16,
                         ::testing::Combine(::testing::Values(OptimizerKind::adamw,
                                                              OptimizerKind::sgd),
                                            ::testing::Bool()));

// SGD steps far below half a bf16 ulp: round-to-nearest would never move w; stochastic rounding
// moves it by the update on average. w = 1 + 2^-7 j (exact bf16, ulp 2^-7), update -lr * g with
// |lr g| between 1/16 and 1/4 ulp. The mean over n elements of (w_new - w) / update is 1 within
// 5 standard errors (each draw has standard deviation at most ulp / 2 / |update|).
TEST(OptimizerGpuStochasticRounding, IsUnbiased) {
  HASTE_REQUIRE_GPU();
  const int64_t n = 1 << 20;
  const float ulp = 0x1p-7f;
  std::vector<bf16> w(n), g(n);
  std::vector<double> update(n);
  OptimizerConfig config = config_of(OptimizerKind::sgd);
  config.weight_decay = 0;
  config.lr = 1.0;
  for (int64_t i = 0; i < n; ++i) {
    w[i] = bf16(1.0f + ulp * static_cast<float>(i % 64));
    const float step = ulp * (0.0625f + 0.1875f * static_cast<float>(i % 97) / 96.0f);
    g[i] = bf16(i % 2 ? step : -step);
    update[i] = -static_cast<double>(__bfloat162float(g[i]));
  }
  DeviceBuffer<bf16> d_w(w), d_g(g);
  DeviceBuffer<float> momentum(std::vector<float>(n, 0.0f));
  const cuda::UpdateScalars s = cuda::UpdateScalars::of(config, config.lr, 1, 1234);
  cuda::optimizer_update(s, d_w.data(), d_g.data(), {momentum.data(), nullptr}, n, 0, nullptr);
  const std::vector<bf16> after = d_w.download();
  double ratio_sum = 0;
  int64_t moved = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double change = static_cast<double>(__bfloat162float(after[i])) - __bfloat162float(w[i]);
    ratio_sum += change / update[i];
    moved += change != 0;
  }
  const double mean = ratio_sum / static_cast<double>(n);
  // Per draw, |change / update| <= ulp / |update| <= 16, so the standard deviation is < 8.
  const double standard_error = 8.0 / std::sqrt(static_cast<double>(n));
  EXPECT_NEAR(mean, 1.0, 5 * standard_error);
  EXPECT_GT(moved, n / 32) << "stochastic rounding never rounded away from w";
  EXPECT_LT(moved, n / 2);
}

// DST: the slot remap of bf16 weights and of OptimizerGpu's tail state against the CPU's
// (exact: values are only moved).
TEST(OptimizerGpuRemap, MatchesTheCpuRemap) {
  HASTE_REQUIRE_GPU();
  SmallModel small;
  small.model.compute_gradients(small.data, small.batch(0));
  const OptimizerConfig config = config_of(OptimizerKind::adamw);
  Optimizer cpu(config, small.model);
  cpu.step(config.lr);  // nonzero state

  const GroupSharedShape shape = small.model.tail_shape();
  test_util::RandomTensors random(5);
  std::vector<int32_t> source(shape.G * shape.k);
  for (int32_t& s : source) s = static_cast<int32_t>(random.below(shape.k + 1)) - 1;

  cuda::OptimizerGpu gpu(config);
  for (const Parameter& p : small.model.parameters()) gpu.add(p.name, p.shape);
  gpu.upload(cpu);
  DeviceBuffer<int32_t> d_source(source);
  gpu.remap_tail_slots(shape, d_source.data(), nullptr);

  std::vector<double> weights = to_double(std::span<const float>(small.model.tail().weights));
  const std::vector<bf16> weights_bf16 = test_util::round_to_bf16(weights);
  DeviceBuffer<bf16> d_weights(weights_bf16);
  cuda::remap_tail_slots(shape, d_source.data(), d_weights.data(), nullptr);
  std::vector<float> expected_weights(weights.begin(), weights.end());
  model::remap_slots(expected_weights, shape, source);
  EXPECT_EQ(to_double(d_weights.download()),
            std::vector<double>(expected_weights.begin(), expected_weights.end()));

  cpu.remap_tail_slots(shape, source);
  Optimizer copy(config, small.model);
  gpu.download(copy);
  auto expected = cpu.state_tensors(), got = copy.state_tensors();
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_TRUE(std::equal(got[i].data.begin(), got[i].data.end(), expected[i].data.begin()))
        << got[i].name;
  }
}

}  // namespace
}  // namespace haste
