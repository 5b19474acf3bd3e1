// The GPU output layer against the CPU model:
//  - one forward_backward against the CPU output layer (src/model/output_layer.cpp) on fresh
//    random bf16-rounded weights and h: loss, the four gradients (poisoned first) and dh (added
//    to a random start), for HASTE with and without private features, a head-less tail and the
//    dense layer (every label in the head; one large enough for the split dh product), and
//    short batches padded to a multiple of 16 (the padding rows get no loss and no gradient);
//  - one whole training step (gradients + SGD update with stochastic rounding) against
//    Model::compute_gradients + Optimizer::step, the weights moving through upload/download;
//  - train_step (the tail weights' update inside the fused kernel) against forward_backward +
//    update of the same layer.
// bf16 operands: bounds of METHOD.md (1e-2); the loss 5e-3 (the head's logits are bf16).
// Skipped without a GPU.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <haste/cuda/device_buffer.hpp>
#include <haste/cuda/output_layer_gpu.hpp>
#include <haste/optimizer.hpp>
#include <tuple>
#include <vector>

#include "model/encoder.hpp"
#include "model/model_test_util.hpp"
#include "model/output_layer.hpp"
#include "model/output_shards.hpp"
#include "test_util/device_copy.hpp"
#include "test_util/gpu.hpp"
#include "test_util/gpu_compare.hpp"
#include "test_util/random_tensors.hpp"

namespace haste {
namespace {

using cuda::bf16;
using cuda::DeviceBuffer;
using test_util::download;
using test_util::relative_error;
using test_util::to_double;
using test_util::upload;

std::vector<double> to_double(std::span<const float> values) {
  return {values.begin(), values.end()};
}

// Rounds fp32 values to bf16 in place.
void round_in_place(std::vector<float>& values) {
  for (float& x : values) x = __bfloat162float(__float2bfloat16(x));
}

template <typename T>
void poison(const T* device, size_t n) {
  if (n == 0) return;
  HASTE_CUDA_CHECK(cudaMemset(const_cast<T*>(device), 0xff, n * sizeof(T)));
}

// hT [d, B] bf16 of h [B, d].
std::vector<bf16> transpose_bf16(const std::vector<float>& h, int64_t B, int64_t d) {
  std::vector<bf16> out(B * d);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t f = 0; f < d; ++f) out[f * B + b] = __float2bfloat16(h[b * d + f]);
  }
  return out;
}

// One forward_backward of `gpu` on hT [d, B] against `targets` (model ids), the first `rows`
// rows real; the gradient of h is added to dht. Returns the loss.
double forward_backward(cuda::OutputLayerGpu& gpu, int64_t B, int64_t rows,
                        const std::vector<bf16>& hT, const CsrMatrix& targets,
                        DeviceBuffer<float>& dht) {
  DeviceBuffer<bf16> d_ht(hT);
  DeviceBuffer<int64_t> d_indptr(targets.indptr);
  DeviceBuffer<int32_t> d_indices(targets.indices);
  DeviceBuffer<double> d_loss(std::vector<double>{0.0});
  gpu.forward_backward(B, rows, d_ht.data(),
                       {d_indptr.data(), d_indices.data(), nullptr, targets.nnz()}, dht.data(),
                       d_loss.data(), nullptr);
  HASTE_CUDA_CHECK(cudaDeviceSynchronize());
  return d_loss.download()[0];
}

// The GPU layer's gradients against the CPU's.
void expect_gradients(const cuda::OutputLayerGpu& gpu, std::span<const float> dhead_w,
                      std::span<const float> dhead_b, std::span<const float> dtail_w,
                      std::span<const float> dtail_b) {
  auto expect = [](auto got, std::span<const float> expected, const char* name) {
    if (expected.empty()) return;
    EXPECT_LT(relative_error(to_double(got), to_double(expected)), 1e-2) << name;
  };
  expect(download(gpu.head_weight_grad(), dhead_w.size()), dhead_w, "head.weight grad");
  expect(download(gpu.head_bias_grad(), dhead_b.size()), dhead_b, "head.bias grad");
  expect(download(gpu.tail_weight_grad(), dtail_w.size()), dtail_w, "tail.weight grad");
  expect(download(gpu.tail_bias_grad(), dtail_b.size()), dtail_b, "tail.bias grad");
}

// (real rows, d, L, H, g, k, private features); the GPU's batch is the rows rounded up to 16.
using Case = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool>;

class OutputLayerGpuGradients : public ::testing::TestWithParam<Case> {};

TEST_P(OutputLayerGpuGradients, MatchTheCpuOutputLayer) {
  HASTE_REQUIRE_GPU();
  const auto [rows, d, L, H_wanted, g, k, private_features] = GetParam();
  const int64_t B = (rows + 15) / 16 * 16;
  cuda::OutputLayerShape shape = cuda::OutputLayerShape::haste(d, L, H_wanted, g, k);
  shape.private_features = private_features;
  ModelShape model_shape{.sparse_input = true,
                         .input_dim = 1,
                         .num_labels = L,
                         .head_labels = shape.H,
                         .groups = shape.G,
                         .group_size = g,
                         .fan_in = k > 0 ? k : 32};  // the dense layer has no tail
  model::OutputLayer cpu(model_shape, d, private_features);
  test_util::RandomTensors random(static_cast<uint64_t>(rows * 31 + d * 7 + L + shape.H));
  cpu.initialize(random.tensor<float>(L, -3.0, 0.0), static_cast<uint64_t>(L));
  round_in_place(cpu.head_weight);
  round_in_place(cpu.tail.weights);
  std::vector<float> h = random.tensor<float>(rows * d);
  round_in_place(h);
  CsrMatrix targets = random.sparse_targets(rows, L, 0.03);

  std::vector<float> dh(rows * d);
  const double loss = model::OutputShards(cpu, 1).forward_backward(cpu, rows, h, targets, dh);
  // The GPU's padding rows: h 0, no targets.
  h.resize(B * d, 0.f);
  while (targets.rows < B) targets.append_row({}, {});

  OptimizerConfig optimizer;
  cuda::OutputLayerGpu gpu(shape, optimizer, B);
  upload(gpu.head_weight(), std::vector<bf16>(cpu.head_weight.begin(), cpu.head_weight.end()));
  upload(gpu.head_bias(), cpu.head_bias);
  if (shape.G > 0) {
    upload(gpu.tail_weight(), std::vector<bf16>(cpu.tail.weights.begin(), cpu.tail.weights.end()));
    upload(gpu.tail_bias(), cpu.tail.bias);
    upload(gpu.tail_indices(), cpu.tail.indices);
  }
  // A first pass allocates the tail's weight gradient (made when first written), so that it
  // can be poisoned like the others before the pass under test.
  DeviceBuffer<float> scratch(std::vector<float>(B * d, 0.f));
  forward_backward(gpu, B, rows, transpose_bf16(h, B, d), targets, scratch);
  poison(gpu.head_weight_grad(), cpu.dhead_weight.size());
  poison(gpu.head_bias_grad(), cpu.dhead_bias.size());
  poison(gpu.tail_weight_grad(), cpu.dtail_weight.size());
  poison(gpu.tail_bias_grad(), cpu.dtail_bias.size());

  const std::vector<float> dh_start = random.tensor<float>(B * d);
  std::vector<float> dht_start(B * d);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t f = 0; f < d; ++f) dht_start[f * B + b] = dh_start[b * d + f];
  }
  DeviceBuffer<float> d_dht(dht_start);
  const double gpu_loss = forward_backward(gpu, B, rows, transpose_bf16(h, B, d), targets, d_dht);

  EXPECT_NEAR(gpu_loss, loss, 5e-3 * std::abs(loss)) << "loss";
  expect_gradients(gpu, cpu.dhead_weight, cpu.dhead_bias, cpu.dtail_weight, cpu.dtail_bias);
  const std::vector<float> dht = d_dht.download();
  std::vector<double> got(B * d), expected(B * d);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t f = 0; f < d; ++f) {
      got[b * d + f] = dht[f * B + b] - static_cast<double>(dh_start[b * d + f]);
      expected[b * d + f] = b < rows ? dh[b * d + f] : 0.f;
    }
  }
  EXPECT_LT(relative_error(got, expected), 1e-2) << "dh";
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, OutputLayerGpuGradients,
    ::testing::Values(Case{32, 64, 300, 40, 8, 32, false},    // head + tail, padding slots
                      Case{48, 256, 500, 64, 16, 64, true},   // private features
                      Case{16, 96, 200, 0, 32, 32, false},    // no head
                      Case{64, 128, 700, 700, 1, 0, false},   // dense: every label in the head
                      Case{32, 64, 9001, 9001, 1, 0, false},  // dense, dh split over labels
                      Case{32, 128, 257, 100, 32, 128, false},
                      Case{27, 64, 300, 40, 8, 32, false},      // padded: 27 rows in 32
                      Case{1, 96, 200, 0, 32, 32, false},       // padded: 1 row in 16, no head
                      Case{305, 64, 700, 50, 32, 64, false}));  // padded, two tail launches

// A whole step on a small model: h from the CPU encoder, targets renumbered to model ids.
TEST(OutputLayerGpuStep, MatchesTheCpuModelAndOptimizer) {
  HASTE_REQUIRE_GPU();
  const Dataset data = test_util::small_synthetic(64, 80, 300);
  const ModelConfig config = test_util::small_gpu_config();
  Model model = Model::build(config, data);
  OptimizerConfig optimizer_config;
  optimizer_config.kind = OptimizerKind::sgd;
  optimizer_config.lr = 2.0;  // updates far above a bf16 ulp of the weights
  const std::vector<int64_t> rows = test_util::first_rows(32);
  const auto B = static_cast<int64_t>(rows.size());

  // Round the output layer's weights to bf16 first so both sides start from the same values.
  for (const Parameter& p : model.parameters()) {
    if (p.name.ends_with(".weight") && !p.name.starts_with("encoder.")) {
      for (float& x : p.value) x = __bfloat162float(__float2bfloat16(x));
    }
  }
  cuda::OutputLayerGpu gpu = cuda::OutputLayerGpu::from_model(model, optimizer_config, B, 7);
  Model before = test_util::copy_model(model);

  // h of the batch through the CPU encoder with the model's encoder weights.
  model::Encoder encoder(true, data.num_features(), config.hidden, config.activation, false);
  for (const NamedTensor<const float>& t : model.float_tensors()) {
    if (t.name == "encoder.0.weight")
      encoder.layers()[0].weight.assign(t.data.begin(), t.data.end());
    if (t.name == "encoder.0.bias") encoder.layers()[0].bias.assign(t.data.begin(), t.data.end());
  }
  model::EncoderActivations activations;
  const std::span<const float> h = encoder.forward(InputRows::of(data, rows), activations);
  std::vector<int32_t> to_model(model.shape().num_labels);
  for (const NamedTensor<const int32_t>& t : model.int_tensors()) {
    if (t.name != "labels.model_to_original") continue;
    for (size_t i = 0; i < t.data.size(); ++i) to_model[t.data[i]] = static_cast<int32_t>(i);
  }
  CsrMatrix targets;
  for (int64_t row : rows) {
    std::vector<int32_t> labels;
    for (int32_t label : data.labels.row_indices(row)) labels.push_back(to_model[label]);
    std::sort(labels.begin(), labels.end());
    targets.append_row(labels, {});
  }

  const double loss = model.compute_gradients(data, rows);
  Optimizer optimizer(optimizer_config, model);
  std::vector<std::vector<float>> grads;
  for (const Parameter& p : model.parameters()) grads.emplace_back(p.grad.begin(), p.grad.end());
  optimizer.step(optimizer_config.lr);

  DeviceBuffer<float> d_dht(std::vector<float>(B * model.hidden_dim(), 0.f));
  const double gpu_loss = forward_backward(
      gpu, B, B, transpose_bf16({h.begin(), h.end()}, B, model.hidden_dim()), targets, d_dht);
  EXPECT_NEAR(gpu_loss, loss, 5e-3 * std::abs(loss)) << "loss";
  const std::vector<Parameter> parameters = model.parameters();
  expect_gradients(gpu, grads[2], grads[3], grads[4], grads[5]);
  ASSERT_EQ(parameters[2].name, "head.weight");
  ASSERT_EQ(parameters[4].name, "tail.weight");

  gpu.update(optimizer_config.lr, nullptr);
  Model after = test_util::copy_model(before);
  gpu.download(after);
  std::vector<Parameter> old_parameters = before.parameters(), new_parameters = after.parameters();
  for (size_t i = 2; i < parameters.size(); ++i) {
    std::vector<double> got, expected;
    for (size_t e = 0; e < parameters[i].value.size(); ++e) {
      got.push_back(new_parameters[i].value[e] - old_parameters[i].value[e]);
      expected.push_back(parameters[i].value[e] - old_parameters[i].value[e]);
    }
    EXPECT_LT(relative_error(got, expected), 3e-2) << parameters[i].name << " update";
    EXPECT_LT(relative_error(to_double(new_parameters[i].value), to_double(parameters[i].value)),
              1e-2)
        << parameters[i].name;
  }
  EXPECT_TRUE(std::equal(after.tail().indices.begin(), after.tail().indices.end(),
                         model.tail().indices.begin()));
}

// train_step against forward_backward + update on two copies of one random layer, for AdamW
// and SGD, at batches the fused kernel updates itself (B <= 256) and one it does not. After the
// first step the tail weights agree bit for bit (the kernel's dW sum has a fixed order and the
// update draws the same rounding bits from the same bf16 gradient); the loss, dh and the other
// parameters, and every parameter after further steps, to float summation order (dbias, dh and
// the loss are summed with atomics).
class OutputLayerGpuTrainStep
    : public ::testing::TestWithParam<std::tuple<int64_t, OptimizerKind>> {};

TEST_P(OutputLayerGpuTrainStep, EqualsForwardBackwardThenUpdate) {
  HASTE_REQUIRE_GPU();
  const auto [B, kind] = GetParam();
  const cuda::OutputLayerShape shape = cuda::OutputLayerShape::haste(96, 3000, 200, 32, 64);
  OptimizerConfig optimizer;
  optimizer.kind = kind;
  optimizer.lr = 0.05;
  cuda::OutputLayerGpu fused(shape, optimizer, B, 5), unfused(shape, optimizer, B, 5);
  fused.randomize(3);
  unfused.randomize(3);
  test_util::RandomTensors random(static_cast<uint64_t>(B));
  const CsrMatrix targets = random.sparse_targets(B, shape.labels(), 0.002);
  DeviceBuffer<int64_t> indptr(targets.indptr);
  DeviceBuffer<int32_t> indices(targets.indices.empty() ? std::vector<int32_t>{0}
                                                        : targets.indices);
  const cuda::LabelTargetsDevice device_targets{indptr.data(), indices.data(), nullptr,
                                                targets.nnz()};
  std::vector<bf16> hT;
  for (float x : random.tensor<float>(shape.d * B)) hT.push_back(__float2bfloat16(x));
  const DeviceBuffer<bf16> d_ht(hT);
  const int64_t weights = shape.G * shape.g * shape.k;

  for (int step = 0; step < 3; ++step) {
    DeviceBuffer<float> dht_fused(std::vector<float>(shape.d * B, 0.f));
    DeviceBuffer<float> dht_unfused(std::vector<float>(shape.d * B, 0.f));
    DeviceBuffer<double> loss_fused(std::vector<double>{0.0});
    DeviceBuffer<double> loss_unfused(std::vector<double>{0.0});
    poison(fused.tail_weight_grad(), fused.tail_weight_grad() ? weights : 0);
    fused.train_step(B, B, d_ht.data(), device_targets, dht_fused.data(), loss_fused.data(),
                     optimizer.lr, nullptr);
    unfused.forward_backward(B, B, d_ht.data(), device_targets, dht_unfused.data(),
                             loss_unfused.data(), nullptr);
    unfused.update(optimizer.lr, nullptr);
    HASTE_CUDA_CHECK(cudaDeviceSynchronize());
    const double loss = loss_unfused.download()[0];
    EXPECT_NEAR(loss_fused.download()[0], loss, 1e-6 * std::abs(loss)) << "step " << step;
    EXPECT_LT(relative_error(to_double(dht_fused.download()), to_double(dht_unfused.download())),
              1e-5)
        << "dh, step " << step;
    const std::vector<bf16> tail_fused = download(fused.tail_weight(), weights);
    const std::vector<bf16> tail_unfused = download(unfused.tail_weight(), weights);
    if (step == 0) {
      EXPECT_EQ(0, std::memcmp(tail_fused.data(), tail_unfused.data(), weights * sizeof(bf16)))
          << "tail weights after the first step";
    }
    EXPECT_LT(relative_error(to_double(tail_fused), to_double(tail_unfused)), 1e-3)
        << "tail weights, step " << step;
    EXPECT_LT(relative_error(to_double(download(fused.head_weight(), shape.H * shape.d_head())),
                             to_double(download(unfused.head_weight(), shape.H * shape.d_head()))),
              1e-3)
        << "head weights, step " << step;
    EXPECT_LT(relative_error(to_double(download(fused.tail_bias(), shape.G * shape.g)),
                             to_double(download(unfused.tail_bias(), shape.G * shape.g))),
              1e-3)
        << "tail bias, step " << step;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Batches, OutputLayerGpuTrainStep,
    ::testing::Combine(::testing::Values(int64_t{64}, int64_t{256}, int64_t{320}),
                       ::testing::Values(OptimizerKind::adamw, OptimizerKind::sgd)));

}  // namespace
}  // namespace haste
