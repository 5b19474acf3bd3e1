// Label shards of the GPU output layer on ONE GPU (what `--gpus N` runs, one shard per GPU),
// against the CPU model: for P = 3 shards of a small model, each shard's OutputLayerGpu
// (OutputLayerShape::of(model, shard), upload(model, shard)) fed the batch's labels renumbered
// by UploadOptions::of(model, shard) must give its rows of the CPU gradients, the shards' losses
// and their dh summed must give the unsharded layer's, and an SGD step downloaded shard by
// shard (weights and optimizer state, OptimizerGpu::download with first rows) must land in the
// right rows of the host model and optimizer. bf16 bounds as in output_layer_gpu_kernels_test.
// Skipped without a GPU.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <haste/cuda/batch_upload.hpp>
#include <haste/cuda/device_buffer.hpp>
#include <haste/cuda/output_layer_gpu.hpp>
#include <haste/optimizer.hpp>
#include <haste/shard/label_shards.hpp>
#include <vector>

#include "model/model_test_util.hpp"
#include "test_util/gpu.hpp"
#include "test_util/gpu_compare.hpp"

namespace haste {
namespace {

using cuda::bf16;
using cuda::DeviceBuffer;
using test_util::mapped_targets;
using test_util::relative_error;

std::vector<double> doubles(std::span<const float> values) {
  return {values.begin(), values.end()};
}

float to_float(float x) { return x; }
float to_float(bf16 x) { return __bfloat162float(x); }

template <typename T>
std::vector<double> device_doubles(const T* device, int64_t n) {
  std::vector<T> host(n);
  if (n > 0) {
    HASTE_CUDA_CHECK(cudaMemcpy(host.data(), device, n * sizeof(T), cudaMemcpyDeviceToHost));
  }
  std::vector<double> out;
  for (T x : host) out.push_back(to_float(x));
  return out;
}

// Loss of `layer` on hT; its dh added to dht.
double step(cuda::OutputLayerGpu& layer, int64_t B, const DeviceBuffer<bf16>& hT,
            const CsrMatrix& targets, DeviceBuffer<float>& dht) {
  DeviceBuffer<int64_t> indptr(targets.indptr);
  DeviceBuffer<int32_t> indices(targets.indices.empty() ? std::vector<int32_t>{0}
                                                        : targets.indices);
  DeviceBuffer<double> loss(std::vector<double>{0.0});
  layer.forward_backward(B, B, hT.data(), {indptr.data(), indices.data(), nullptr, targets.nnz()},
                         dht.data(), loss.data(), nullptr);
  HASTE_CUDA_CHECK(cudaDeviceSynchronize());
  return loss.download()[0];
}

TEST(OutputLayerGpuShards, ThreeShardsOnOneGpuMatchTheWholeLayer) {
  HASTE_REQUIRE_GPU();
  const Dataset data = test_util::small_synthetic(64, 80, 300);
  Model model = Model::build(test_util::small_gpu_config(), data);
  for (const Parameter& p : model.parameters()) {
    if (p.name.ends_with(".weight") && !p.name.starts_with("encoder.")) {
      for (float& x : p.value) x = __bfloat162float(__float2bfloat16(x));
    }
  }
  OptimizerConfig sgd;
  sgd.kind = OptimizerKind::sgd;
  sgd.lr = 2.0;
  const std::vector<int64_t> rows = test_util::first_rows(32);
  const auto B = static_cast<int64_t>(rows.size());
  const int64_t d = model.hidden_dim();
  Model before = test_util::copy_model(model);

  const double loss = model.compute_gradients(data, rows);
  std::vector<std::vector<float>> grads;
  for (const Parameter& p : model.parameters()) grads.emplace_back(p.grad.begin(), p.grad.end());
  // h [B, d] of the batch: the tail's input (no private features, no dropout).
  const std::span<const float> h = model.last_tail_batch().h;
  ASSERT_EQ(static_cast<int64_t>(h.size()), B * d);
  std::vector<bf16> ht(B * d);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t f = 0; f < d; ++f) ht[f * B + b] = __float2bfloat16(h[b * d + f]);
  }
  const DeviceBuffer<bf16> d_ht(ht);

  // The whole layer's dh, to compare the shards' sum with.
  cuda::OutputLayerGpu whole = cuda::OutputLayerGpu::from_model(before, sgd, B, 7);
  DeviceBuffer<float> whole_dht(std::vector<float>(B * d, 0.f));
  step(whole, B, d_ht,
       mapped_targets(data, rows, cuda::UploadOptions::of(before).original_to_model), whole_dht);

  Optimizer optimizer(sgd, model);
  optimizer.step(sgd.lr);  // the CPU's update, for the downloaded weights and state
  Model after = test_util::copy_model(before);
  Optimizer downloaded(sgd, after);

  const std::vector<shard::LabelShard> shards =
      shard::split_labels(model.shape().head_labels, model.shape().groups, 3);
  const std::vector<Parameter> parameters = model.parameters();
  DeviceBuffer<float> shards_dht(std::vector<float>(B * d, 0.f));
  double shards_loss = 0;
  for (const shard::LabelShard& s : shards) {
    cuda::OutputLayerGpu layer(cuda::OutputLayerShape::of(before, s), sgd, B, 7);
    layer.upload(before, s);
    const CsrMatrix targets =
        mapped_targets(data, rows, cuda::UploadOptions::of(before, s).original_to_model);
    shards_loss += step(layer, B, d_ht, targets, shards_dht);
    const int64_t g = model.shape().group_size, k = model.tail_shape().k;
    auto rows_of = [&](size_t i, int64_t row_size) {
      const auto range = shard::label_rows(s, parameters[i].name, g);
      return std::span<const float>(grads[i]).subspan(range->first * row_size,
                                                      (range->second - range->first) * row_size);
    };
    const std::pair<const char*, std::pair<std::vector<double>, std::span<const float>>> checks[] =
        {{"head.weight",
          {device_doubles(layer.head_weight_grad(), s.head_labels() * d), rows_of(2, d)}},
         {"head.bias", {device_doubles(layer.head_bias_grad(), s.head_labels()), rows_of(3, 1)}},
         {"tail.weight",
          {device_doubles(layer.tail_weight_grad(), s.groups() * g * k), rows_of(4, k)}},
         {"tail.bias", {device_doubles(layer.tail_bias_grad(), s.groups() * g), rows_of(5, 1)}}};
    for (const auto& [name, pair] : checks) {
      if (pair.second.empty()) continue;
      EXPECT_LT(relative_error(pair.first, doubles(pair.second)), 1e-2) << name << " grad";
    }
    layer.update(sgd.lr, nullptr);
    layer.download(after, s);
    layer.optimizer().download(
        downloaded, [&](const std::string& name) { return shard::label_rows(s, name, g)->first; });
  }
  EXPECT_NEAR(shards_loss, loss, 5e-3 * std::abs(loss));
  EXPECT_LT(relative_error(doubles(shards_dht.download()), doubles(whole_dht.download())), 1e-2)
      << "dh summed over the shards";

  const std::vector<Parameter> updated = after.parameters();
  for (size_t i = 2; i < parameters.size(); ++i) {
    EXPECT_LT(relative_error(doubles(updated[i].value), doubles(parameters[i].value)), 1e-2)
        << parameters[i].name;
  }
  EXPECT_TRUE(std::equal(after.tail().indices.begin(), after.tail().indices.end(),
                         model.tail().indices.begin()));
  const auto want = optimizer.state_tensors(), got = downloaded.state_tensors();
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i].name.find("head.") == std::string::npos &&
        want[i].name.find("tail.") == std::string::npos) {
      continue;
    }
    EXPECT_LT(relative_error(doubles(got[i].data), doubles(want[i].data)), 3e-2) << want[i].name;
  }
}

}  // namespace
}  // namespace haste
