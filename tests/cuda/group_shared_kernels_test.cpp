// The CUDA group-shared kernels (and the g = 1 standard fixed fan-in kernels) against the CPU
// reference in double, on fresh random inputs rounded to bf16 first (so both sides compute the
// same function), with every output poisoned (NaN) before the launch. Bounds follow the device
// README's METHOD.md: bf16 outputs within 1e-2 relative error, fp32 accumulations far tighter.
// Shapes keep partial stages, partial batch tiles and odd d in play. Skipped without a GPU.
#include <cuda_bf16.h>

#include <cmath>
#include <haste/cuda/device_buffer.hpp>
#include <haste/cuda/group_shared_cuda.hpp>
#include <haste/group_shared.hpp>
#include <tuple>
#include <vector>

#include "test_util/expect_error.hpp"
#include "test_util/gpu.hpp"
#include "test_util/gpu_compare.hpp"
#include "test_util/random_tensors.hpp"

namespace haste {
namespace {

using cuda::bf16;
using cuda::DeviceBuffer;
using test_util::relative_error;
using test_util::round_to_bf16;
using test_util::to_double;
using test_util::transpose;

// (g, k, B, d, G)
using Case = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>;

class GroupSharedKernels : public ::testing::TestWithParam<Case> {};

TEST_P(GroupSharedKernels, MatchTheCpuReference) {
  HASTE_REQUIRE_GPU();
  const auto [g, k, B, d, G] = GetParam();
  const GroupSharedShape shape{d, G, g, k};
  const int64_t L = shape.labels();
  test_util::RandomTensors random(static_cast<uint64_t>(g * 1000003 + k * 1009 + B * 7 + G));

  std::vector<int32_t> indices = random.group_indices(G, d, k);
  std::vector<double> h = random.tensor<double>(B * d), w = random.tensor<double>(L * k);
  std::vector<double> bias = random.tensor<double>(L), dz = random.tensor<double>(B * L);
  std::vector<double> dh_start = random.tensor<double>(B * d);
  const std::vector<bf16> h_t_bf16 = [&] {
    round_to_bf16(h);
    std::vector<double> ht = transpose(h, B, d);
    return round_to_bf16(ht);
  }();
  const std::vector<bf16> w_bf16 = round_to_bf16(w), dz_bf16 = round_to_bf16(dz);
  std::vector<float> bias_f(bias.begin(), bias.end());

  const GroupSharedView<double> cpu{shape, indices, w, bias};
  std::vector<double> z_ref(B * L), dw_ref(L * k), db_ref(L), dh_ref = dh_start;
  group_shared_forward<double>(cpu, B, h, z_ref);
  group_shared_backward_weights<double>(cpu, B, h, dz, dw_ref, db_ref);
  group_shared_backward_inputs<double>(cpu, B, dz, dh_ref);

  DeviceBuffer<int32_t> d_indices(indices);
  DeviceBuffer<bf16> d_w(w_bf16), d_ht(h_t_bf16), d_dz(dz_bf16), d_z(B * L), d_dw(L * k);
  DeviceBuffer<float> d_bias(bias_f), d_db(L);
  std::vector<double> dh_start_t = transpose(dh_start, B, d);
  DeviceBuffer<float> d_dht(std::vector<float>(dh_start_t.begin(), dh_start_t.end()));
  d_z.fill_bytes(0xff);
  d_dw.fill_bytes(0xff);
  d_db.fill_bytes(0xff);

  const cuda::GroupSharedDevice layer{shape, d_indices.data(), d_w.data(), d_bias.data()};
  cuda::group_shared_forward(layer, B, d_ht.data(), d_z.data(), nullptr);
  cuda::group_shared_backward_weights(layer, B, d_ht.data(), d_dz.data(), d_dw.data(), d_db.data(),
                                      nullptr);
  cuda::group_shared_backward_inputs(layer, B, d_dz.data(), d_dht.data(), nullptr);
  HASTE_CUDA_CHECK(cudaDeviceSynchronize());

  EXPECT_LT(relative_error(to_double(d_z.download()), z_ref), 1e-2) << "forward";
  EXPECT_LT(relative_error(to_double(d_dw.download()), dw_ref), 1e-2) << "backward weights";
  EXPECT_LT(relative_error(to_double(d_db.download()), db_ref), 1e-5) << "backward bias";
  EXPECT_LT(relative_error(transpose(to_double(d_dht.download()), d, B), dh_ref), 1e-5)
      << "backward inputs";
}

// Backward to inputs picks its plan by shared memory: most cases take the 64-row plan, d = 1024
// the one-block plan, and (32, 32, d = 768) the two-blocks-per-SM plan.
INSTANTIATE_TEST_SUITE_P(Shapes, GroupSharedKernels,
                         ::testing::Values(Case{8, 32, 16, 77, 45}, Case{8, 128, 80, 300, 19},
                                           Case{16, 64, 48, 129, 23}, Case{32, 64, 96, 1024, 9},
                                           Case{32, 32, 144, 200, 33}, Case{64, 128, 32, 256, 5},
                                           Case{64, 32, 64, 100, 7}, Case{16, 128, 16, 640, 3},
                                           Case{1, 32, 112, 300, 301}, Case{1, 64, 16, 1024, 40},
                                           Case{1, 128, 80, 150, 129}, Case{32, 32, 48, 768, 5}));

TEST(GroupSharedKernelsApi, RejectsUnsupportedShapesBeforeAnyLaunch) {
  test_util::expect_error([] { cuda::check_supported({256, 10, 4, 32}, 64); }, "g = 4");
  test_util::expect_error([] { cuda::check_supported({256, 10, 8, 48}, 64); }, "k = 48");
  test_util::expect_error([] { cuda::check_supported({2048, 10, 8, 32}, 64); }, "d = 2048");
  test_util::expect_error([] { cuda::check_supported({256, 10, 8, 32}, 40); }, "multiple of 16");
  cuda::check_supported({768, 10, 32, 64}, 256);
}

}  // namespace
}  // namespace haste
