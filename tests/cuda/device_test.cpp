#include <haste/device.hpp>

#include "test_util/gpu.hpp"

namespace haste {

TEST(Device, InventoryExplainsAnAbsentGpu) {
  GpuInventory inventory = detect_gpus();
  if (inventory.gpus.empty()) {
    EXPECT_FALSE(inventory.unavailable_reason.empty());
  } else {
    EXPECT_TRUE(inventory.unavailable_reason.empty());
  }
}

TEST(Device, GpuIsHopperOnTheLentMachine) {
  HASTE_REQUIRE_GPU();
  ASSERT_TRUE(cuda_compiled());
  const GpuInfo& gpu = detect_gpus().gpus.front();
  EXPECT_GE(gpu.compute_major, 9) << gpu.name << ": kernels are built for sm_90a";
  EXPECT_GT(gpu.memory_bytes, 0);
}

}  // namespace haste
