// The NCCL ranks of one process (ncclCommInitAll over every visible GPU, one thread per GPU)
// against sums computed on the host: all-reduce (float, double), all-gather, reduce-scatter.
// Skipped without a GPU; with one GPU it checks the P = 1 path that `haste train --gpus 1` uses.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <haste/cuda/cuda_check.hpp>
#include <haste/cuda/device_buffer.hpp>
#include <haste/cuda/nccl_communicator.hpp>
#include <haste/device.hpp>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "test_util/gpu.hpp"

namespace haste::cuda {
namespace {

float value(int rank, size_t i) { return static_cast<float>(rank * 100 + i) * 0.25f; }

TEST(NcclCommunicator, CollectivesOverEveryGpuOfThisProcess) {
  HASTE_REQUIRE_GPU();
  int count = 0;
  HASTE_CUDA_CHECK(cudaGetDeviceCount(&count));
  std::vector<int> devices(count);
  std::iota(devices.begin(), devices.end(), 0);
  auto comms = NcclCommunicator::for_devices(devices);
  ASSERT_EQ(static_cast<int>(comms.size()), count);
  ASSERT_STREQ(std::getenv("NCCL_NVLS_ENABLE"), "0");
  const int P = count;
  const size_t n = 1000;
  std::vector<std::vector<float>> reduced(P), gathered(P), scattered(P);
  std::vector<std::vector<double>> reduced_double(P);
  std::vector<std::thread> threads;
  for (int r = 0; r < P; ++r) {
    threads.emplace_back([&, r] {
      NcclCommunicator& comm = *comms[r];
      HASTE_CUDA_CHECK(cudaSetDevice(comm.device()));
      std::vector<float> mine(n), all(P * n);
      std::vector<double> mine_double(n);
      for (size_t i = 0; i < n; ++i) mine[i] = value(r, i), mine_double[i] = value(r, i);
      for (size_t i = 0; i < P * n; ++i) all[i] = value(r, i);
      DeviceBuffer<float> d_reduce(mine), d_gather(P * n), d_all(all), d_scatter(n);
      DeviceBuffer<double> d_double(mine_double);
      comm.all_reduce(std::span<float>(d_reduce.data(), n));
      comm.all_reduce(std::span<double>(d_double.data(), n));
      comm.all_gather(std::span<const float>(d_reduce.data(), n),
                      std::span<float>(d_gather.data(), P * n));
      comm.reduce_scatter(std::span<const float>(d_all.data(), P * n),
                          std::span<float>(d_scatter.data(), n));
      comm.synchronize();
      reduced[r] = d_reduce.download();
      reduced_double[r] = d_double.download();
      gathered[r] = d_gather.download();
      scattered[r] = d_scatter.download();
    });
  }
  for (std::thread& t : threads) t.join();
  for (int r = 0; r < P; ++r) {
    for (size_t i = 0; i < n; ++i) {
      double sum = 0, scatter_sum = 0;
      for (int q = 0; q < P; ++q) sum += value(q, i), scatter_sum += value(q, r * n + i);
      EXPECT_NEAR(reduced[r][i], sum, 1e-3 * std::abs(sum));
      EXPECT_NEAR(reduced_double[r][i], sum, 1e-9 * std::abs(sum));
      EXPECT_NEAR(scattered[r][i], scatter_sum, 1e-3 * std::abs(scatter_sum));
      for (int q = 0; q < P; ++q) EXPECT_EQ(gathered[r][q * n + i], reduced[q][i]);
    }
  }
}

}  // namespace
}  // namespace haste::cuda
