// DST on label shards of the GPU output layer, on ONE GPU (what `--gpus N` and the multi-process
// GPU run do, one shard per GPU): P = 3 shards' OutputLayerGpu::rewire_tail, each on its groups
// with the global prune rule's scores all-gathered between the ranks (an InProcessGroup here,
// host memory like the HostStagedCommunicator of the training loops), must rewire the tail as
// the whole layer's rewire_tail does: indices, weights and the moved AdamW state bit for bit,
// and the same changed-slot count, for both prune rules and both regrowth rules. Each shard
// chooses on its device with the global threshold of all shards' scores and the whole tail's
// slot ids and random streams (DstKernels holds the device choice to the host's). Gradient
// regrowth recomputes each group's logits with the forward kernel, whose per-group results do
// not depend on how many groups the layer has. Skipped without a GPU.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <haste/cuda/batch_upload.hpp>
#include <haste/cuda/device_buffer.hpp>
#include <haste/cuda/output_layer_gpu.hpp>
#include <haste/optimizer.hpp>
#include <haste/shard/in_process.hpp>
#include <haste/shard/label_shards.hpp>
#include <vector>

#include "model/model_test_util.hpp"
#include "test_util/gpu.hpp"
#include "test_util/random_tensors.hpp"

namespace haste {
namespace {

using cuda::bf16;
using cuda::DeviceBuffer;

// A batch's targets on the device, in the ids of the layer `map` numbers labels for.
struct DeviceTargets {
  DeviceBuffer<int64_t> indptr;
  DeviceBuffer<int32_t> indices;
  int64_t nnz = 0;

  DeviceTargets(const Dataset& data, std::span<const int64_t> rows,
                const std::vector<int32_t>& map) {
    const CsrMatrix targets = test_util::mapped_targets(data, rows, map);
    indptr = DeviceBuffer<int64_t>(targets.indptr);
    indices =
        DeviceBuffer<int32_t>(targets.indices.empty() ? std::vector<int32_t>{0} : targets.indices);
    nnz = targets.nnz();
  }
  cuda::LabelTargetsDevice view() const { return {indptr.data(), indices.data(), nullptr, nnz}; }
};

std::vector<float> state_of(Optimizer& optimizer, const std::string& name) {
  for (const NamedTensor<float>& t : optimizer.state_tensors()) {
    if (t.name == name) return {t.data.begin(), t.data.end()};
  }
  ADD_FAILURE() << "no optimizer state " << name;
  return {};
}

void expect_sharded_rewire_is_whole(DstPrune prune, DstRegrow regrow) {
  SCOPED_TRACE(to_string(prune) + " / " + to_string(regrow));
  const Dataset data = test_util::small_synthetic(64, 80, 300);
  Model model = Model::build(test_util::small_gpu_config(), data);
  OptimizerConfig adamw;  // AdamW: two state tensors to move
  Optimizer host_state(adamw, model);
  test_util::RandomTensors random(3);
  for (NamedTensor<float>& t : host_state.state_tensors()) {
    for (float& x : t.data) x = static_cast<float>(random.uniform(0.0, 1.0));
  }
  const std::vector<int64_t> rows = test_util::first_rows(32);
  const auto B = static_cast<int64_t>(rows.size());
  const int64_t d = model.hidden_dim(), g = model.shape().group_size;
  const DeviceBuffer<bf16> hT([&] {
    std::vector<bf16> values(d * B);
    for (bf16& x : values) x = __float2bfloat16(static_cast<float>(random.uniform(-1, 1)));
    return values;
  }());
  const double fraction = 0.3;
  const uint64_t seed = 99;

  // The whole layer.
  Model whole_model = test_util::copy_model(model);
  Optimizer whole_state(adamw, whole_model);
  int64_t whole_changed = 0;
  {
    cuda::OutputLayerGpu whole = cuda::OutputLayerGpu::from_model(model, adamw, B, 7);
    whole.optimizer().upload(host_state);
    const DeviceTargets targets(data, rows, cuda::UploadOptions::of(model).original_to_model);
    whole_changed =
        whole.rewire_tail(prune, regrow, fraction, seed, {B, hT.data(), targets.view()}, nullptr)
            .changed_slots;
    HASTE_CUDA_CHECK(cudaDeviceSynchronize());
    whole.download(whole_model);
    whole.optimizer().download(whole_state);
  }
  EXPECT_GT(whole_changed, 0);
  EXPECT_NE(whole_model.tail().indices, model.tail().indices);

  // Three shards, each on its own in-process rank.
  constexpr int P = 3;
  const std::vector<shard::LabelShard> shards =
      shard::split_labels(model.shape().head_labels, model.shape().groups, P);
  Model sharded_model = test_util::copy_model(model);
  Optimizer sharded_state(adamw, sharded_model);
  std::vector<int64_t> changed(P, -1);
  shard::InProcessGroup group(P);
  group.run([&](shard::Communicator& comm) {
    const shard::LabelShard& s = shards[comm.rank()];
    const auto first_row = [&](const std::string& name) {
      return shard::label_rows(s, name, g)->first;
    };
    cuda::OutputLayerGpu layer(cuda::OutputLayerShape::of(model, s), adamw, B, 7);
    layer.upload(model, s);
    layer.optimizer().upload(host_state, first_row);
    const DeviceTargets targets(data, rows, cuda::UploadOptions::of(model, s).original_to_model);
    changed[comm.rank()] =
        layer
            .rewire_tail(prune, regrow, fraction, seed, {B, hT.data(), targets.view()}, nullptr,
                         {&comm, s.group_begin})
            .changed_slots;
    HASTE_CUDA_CHECK(cudaDeviceSynchronize());
    layer.download(sharded_model, s);  // disjoint rows
    layer.optimizer().download(sharded_state, first_row);
  });

  for (int r = 0; r < P; ++r) EXPECT_EQ(changed[r], whole_changed) << "rank " << r;
  EXPECT_EQ(sharded_model.tail().indices, whole_model.tail().indices);
  EXPECT_EQ(sharded_model.tail().weights, whole_model.tail().weights);
  for (const char* name : {"adam.m.tail.weight", "adam.v.tail.weight"}) {
    EXPECT_EQ(state_of(sharded_state, name), state_of(whole_state, name)) << name;
  }
}

TEST(OutputLayerGpuShards, DstOnThreeShardsRewiresAsTheWholeLayer) {
  HASTE_REQUIRE_GPU();
  for (DstPrune prune : {DstPrune::global, DstPrune::group_norm}) {
    expect_sharded_rewire_is_whole(prune, DstRegrow::random);
    expect_sharded_rewire_is_whole(prune, DstRegrow::gradient);
  }
}

}  // namespace
}  // namespace haste
