// GPU tests skip, with the reason, on machines without a usable GPU (CI compiles the CUDA code
// but has no GPU); on the lent GPU machine they run.
#pragma once

#include <haste/device.hpp>

#include <gtest/gtest.h>

#define HASTE_REQUIRE_GPU()                                                     \
  do {                                                                          \
    static const ::haste::GpuInventory inventory_ = ::haste::detect_gpus();    \
    if (inventory_.gpus.empty()) GTEST_SKIP() << inventory_.unavailable_reason; \
  } while (0)
