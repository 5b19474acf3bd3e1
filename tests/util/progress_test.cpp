#include <haste/progress.hpp>

#include <gtest/gtest.h>

namespace haste {

TEST(HumanCount, PicksAUnitThatFitsALine) {
  EXPECT_EQ(human_count(789), "789");
  EXPECT_EQ(human_count(45'600), "45.6K");
  EXPECT_EQ(human_count(12'300'000), "12.3M");
}

}  // namespace haste
