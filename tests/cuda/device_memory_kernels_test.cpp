// The device memory ledger (include/haste/cuda/device_memory.hpp): DeviceBuffers add to the
// current bytes and the high-water mark when allocated, and only to the current bytes' decrease
// when freed; a reset starts the mark at the present. Skipped without a GPU.
#include <gtest/gtest.h>

#include <haste/cuda/device_buffer.hpp>
#include <haste/cuda/device_memory.hpp>
#include <utility>

#include "test_util/gpu.hpp"

namespace haste {
namespace {

TEST(DeviceMemoryLedger, TracksBuffersAndTheirPeak) {
  HASTE_REQUIRE_GPU();
  int device = 0;
  HASTE_CUDA_CHECK(cudaGetDevice(&device));
  cuda::reset_peak_device_memory(device);
  const cuda::DeviceMemoryUse start = cuda::device_memory_use(device);
  EXPECT_EQ(start.peak, start.current);
  {
    cuda::DeviceBuffer<float> a(1000);
    cuda::DeviceBuffer<double> b(500);
    EXPECT_EQ(cuda::device_memory_use(device).current, start.current + 8000);
    cuda::DeviceBuffer<float> moved = std::move(a);  // a move allocates and frees nothing
    EXPECT_EQ(cuda::device_memory_use(device).current, start.current + 8000);
  }
  const cuda::DeviceMemoryUse after = cuda::device_memory_use(device);
  EXPECT_EQ(after.current, start.current);
  EXPECT_EQ(after.peak, start.current + 8000);
  cuda::reset_peak_device_memory(device);
  EXPECT_EQ(cuda::device_memory_use(device).peak, start.current);
}

}  // namespace
}  // namespace haste
