// The loss sweep's inline exp and log1p against libm's, over the ranges the loss uses.
#include "cpu/fast_math.hpp"

#include <gtest/gtest.h>

#include <cmath>

namespace haste::cpu {
namespace {

TEST(FastMath, ExpMatchesLibmOnNonPositiveArguments) {
  // 2^20 points from -87 to 0 (the clamp below), each within 2 ulp-sized relative steps.
  constexpr int kPoints = 1 << 20;
  for (int i = 0; i <= kPoints; ++i) {
    const float x = -87.0f * static_cast<float>(i) / kPoints;
    const double expected = std::exp(static_cast<double>(x));
    EXPECT_NEAR(exp_nonpositive(x) / expected, 1.0, 3e-7) << "x = " << x;
  }
}

TEST(FastMath, ExpIsTinyAndPositiveBelowTheClamp) {
  for (float x : {-87.0f, -88.0f, -100.0f, -1e4f, -1e30f, -INFINITY}) {
    const float e = exp_nonpositive(x);
    EXPECT_GT(e, 0.0f) << "x = " << x;
    EXPECT_LE(e, 1.7e-38f) << "x = " << x;
  }
}

TEST(FastMath, Log1pMatchesLibmOnTheUnitInterval) {
  constexpr int kPoints = 1 << 20;
  EXPECT_EQ(log1p_unit(0.0f), 0.0f);
  for (int i = 1; i <= kPoints; ++i) {
    const float e = static_cast<float>(i) / kPoints;
    const double expected = std::log1p(static_cast<double>(e));
    EXPECT_NEAR(log1p_unit(e) / expected, 1.0, 3e-7) << "e = " << e;
  }
  // Tiny arguments keep their relative precision (log1p(e) ~ e).
  for (float e : {1e-10f, 1e-20f, 1e-37f}) EXPECT_NEAR(log1p_unit(e) / e, 1.0, 1e-7);
}

}  // namespace
}  // namespace haste::cpu
