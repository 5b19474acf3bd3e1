// Label grouping on a real data set: the bundled debdeps training set (22K labels).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <haste/dataset.hpp>
#include <haste/label_grouping.hpp>
#include <numeric>

#include "data/random.hpp"

namespace haste {
namespace {

TEST(DebdepsGrouping, GroupsAreFarMoreCohesiveThanRandom) {
  const std::filesystem::path file =
      std::filesystem::path(HASTE_SOURCE_DIR) / "data/debdeps/xc/debdeps_train.txt.xz";
  if (!std::filesystem::exists(file)) GTEST_SKIP() << file << " is missing";
  ReadOptions options;
  options.show_progress = false;
  const Dataset train = read_xc(file, options);

  const auto start = std::chrono::steady_clock::now();
  const CsrMatrix vectors = pifa_label_vectors(train.features, train.labels);
  const auto vectors_done = std::chrono::steady_clock::now();
  constexpr int kGroup = 32;
  const LabelGrouping grouping = group_labels(vectors, kGroup, /*seed=*/1);
  const auto grouping_done = std::chrono::steady_clock::now();

  // A partition of all labels into full groups (but the last), labels never seen in training
  // at the end.
  const int64_t L = train.num_labels();
  ASSERT_EQ(grouping.num_labels(), L);
  std::vector<int32_t> sorted = grouping.order;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int32_t> all(L);
  std::iota(all.begin(), all.end(), 0);
  EXPECT_EQ(sorted, all);
  EXPECT_EQ(grouping.num_groups(), (L + kGroup - 1) / kGroup);
  int64_t empty = 0;
  for (int64_t label = 0; label < L; ++label) empty += vectors.row_indices(label).empty();
  for (int64_t i = L - empty; i < L; ++i) {
    EXPECT_TRUE(vectors.row_indices(grouping.order[i]).empty()) << "position " << i;
  }

  LabelGrouping shuffled = grouping;
  Rng rng(1);
  for (size_t i = shuffled.order.size() - 1; i > 0; --i) {
    std::swap(shuffled.order[i], shuffled.order[rng.below(i + 1)]);
  }
  const double cohesion = mean_group_cosine(vectors, grouping);
  const double random_cohesion = mean_group_cosine(vectors, shuffled);
  std::printf(
      "debdeps: %ld labels (%ld never seen), PIFA %.2f s, grouping g = %d %.2f s; mean "
      "within-group cosine %.3f (random grouping %.3f)\n",
      static_cast<long>(L), static_cast<long>(empty),
      std::chrono::duration<double>(vectors_done - start).count(), kGroup,
      std::chrono::duration<double>(grouping_done - vectors_done).count(), cohesion,
      random_cohesion);
  EXPECT_GT(cohesion, 3 * random_cohesion);
  EXPECT_GT(cohesion, 0.25);
}

}  // namespace
}  // namespace haste
