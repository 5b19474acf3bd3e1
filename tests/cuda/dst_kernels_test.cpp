// The device's DST choice with random regrowth (src/cuda/dst_kernels.cu, through
// OutputLayerGpu::rewire_tail) against haste::rewire_tail on the host, on the same bf16 weights:
// indices, weights and the changed-slot count bit for bit, for both prune rules, scores full of
// ties (broken by slot id), the cap of d - k pruned slots per group (d - k < k), and the largest
// fan-in and width the device choice takes (k = 128, d = 1024). Skipped without a GPU.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <haste/cuda/output_layer_gpu.hpp>
#include <haste/dst.hpp>
#include <tuple>
#include <vector>

#include "test_util/device_copy.hpp"
#include "test_util/gpu.hpp"
#include "test_util/random_tensors.hpp"

namespace haste {
namespace {

using cuda::bf16;
using test_util::download;
using test_util::upload;

// (d, G, g, k, fraction, prune, ties)
using Case = std::tuple<int64_t, int64_t, int64_t, int64_t, double, DstPrune, bool>;

class DstKernels : public ::testing::TestWithParam<Case> {};

TEST_P(DstKernels, RandomRegrowthChoosesAsTheHost) {
  HASTE_REQUIRE_GPU();
  const auto [d, G, g, k, fraction, prune, ties] = GetParam();
  const cuda::OutputLayerShape shape = cuda::OutputLayerShape::haste(d, G * g, 0, g, k);
  OptimizerConfig sgd;
  sgd.kind = OptimizerKind::sgd;
  cuda::OutputLayerGpu layer(shape, sgd, 16);
  test_util::RandomTensors random(static_cast<uint64_t>(d * 131 + G * 7 + k));
  std::vector<int32_t> indices = random.group_indices(G, d, k);
  std::vector<float> weights = random.tensor<float>(G * g * k);
  for (float& w : weights) {
    w = ties ? std::round(w * 2.0f) / 2.0f : __bfloat162float(__float2bfloat16(w));
  }
  upload(layer.tail_indices(), indices);
  upload(layer.tail_weight(), std::vector<bf16>(weights.begin(), weights.end()));

  constexpr uint64_t kSeed = 4242;
  const int64_t changed =
      layer.rewire_tail(prune, DstRegrow::random, fraction, kSeed, {}, nullptr).changed_slots;
  std::vector<int32_t> source(G * k);
  const int64_t host_changed = rewire_tail(shape.tail(), indices, weights, {}, prune,
                                           DstRegrow::random, fraction, kSeed, source)
                                   .changed_slots;

  EXPECT_GT(host_changed, 0);
  EXPECT_EQ(changed, host_changed);
  EXPECT_EQ(download(layer.tail_indices(), indices.size()), indices);
  const std::vector<bf16> device_weights = download(layer.tail_weight(), weights.size());
  EXPECT_EQ(std::vector<float>(device_weights.begin(), device_weights.end()), weights);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, DstKernels,
    ::testing::Values(Case{64, 50, 8, 32, 0.3, DstPrune::global, true},
                      Case{64, 50, 8, 32, 0.3, DstPrune::group_norm, true},
                      Case{96, 40, 16, 64, 0.25, DstPrune::global, false},
                      Case{40, 30, 8, 32, 1.0, DstPrune::global, true},  // cap: d - k = 8
                      Case{40, 30, 8, 32, 0.9, DstPrune::group_norm, false},
                      Case{1024, 12, 16, 128, 0.5, DstPrune::global, false},
                      Case{1024, 12, 16, 128, 0.5, DstPrune::group_norm, true}));

}  // namespace
}  // namespace haste
