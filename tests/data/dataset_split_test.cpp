#include <gtest/gtest.h>

#include <algorithm>
#include <haste/dataset_split.hpp>

#include "test_util/expect_error.hpp"

namespace haste {
namespace {

// Row r has feature r and label r % 5, so every row is recognisable after the split.
Dataset numbered_rows(int64_t rows) {
  Dataset data;
  data.features.cols = rows;
  data.labels.cols = 5;
  for (int64_t r = 0; r < rows; ++r) {
    int32_t feature = static_cast<int32_t>(r), label = static_cast<int32_t>(r % 5);
    float value = 1.0f;
    data.features.append_row({&feature, 1}, {&value, 1});
    data.labels.append_row({&label, 1}, {});
  }
  return data;
}

TEST(DatasetSplit, IsDeterministicDisjointAndComplete) {
  Dataset data = numbered_rows(1000);
  DatasetSplit a = split_dataset(data, 0.3, 7), b = split_dataset(data, 0.3, 7);
  EXPECT_EQ(a.test.features.indices, b.test.features.indices);
  EXPECT_EQ(a.test.num_points(), 300);
  EXPECT_EQ(a.train.num_points(), 700);
  EXPECT_EQ(a.train.num_features(), 1000);  // feature and label spaces are kept
  EXPECT_EQ(a.test.num_labels(), 5);

  std::vector<int32_t> all = a.train.features.indices;
  all.insert(all.end(), a.test.features.indices.begin(), a.test.features.indices.end());
  std::sort(all.begin(), all.end());
  for (int32_t r = 0; r < 1000; ++r) ASSERT_EQ(all[r], r);
  // Original order within each part, labels travel with their rows.
  EXPECT_TRUE(std::is_sorted(a.test.features.indices.begin(), a.test.features.indices.end()));
  for (int64_t r = 0; r < a.test.num_points(); ++r)
    EXPECT_EQ(a.test.labels.row_indices(r)[0], a.test.features.row_indices(r)[0] % 5);

  DatasetSplit other = split_dataset(data, 0.3, 8);
  EXPECT_NE(other.test.features.indices, a.test.features.indices);
}

TEST(DatasetSplit, SplitsDenseRowsToo) {
  Dataset data = numbered_rows(10);
  data.features = CsrMatrix{};
  data.dense.rows = 10;
  data.dense.cols = 2;
  for (int r = 0; r < 10; ++r) data.dense.data.insert(data.dense.data.end(), {float(r), -float(r)});
  DatasetSplit split = split_dataset(data, 0.5, 1);
  ASSERT_EQ(split.test.dense.rows, 5);
  for (int64_t r = 0; r < 5; ++r) {
    EXPECT_EQ(split.test.dense.row(r)[1], -split.test.dense.row(r)[0]);
    EXPECT_EQ(split.test.labels.row_indices(r)[0],
              static_cast<int32_t>(split.test.dense.row(r)[0]) % 5);
  }
}

TEST(DatasetSplit, RejectsFractionsOutsideTheOpenInterval) {
  Dataset data = numbered_rows(10);
  test_util::expect_error([&] { split_dataset(data, 0.0, 1); }, "between 0 and 1");
  test_util::expect_error([&] { split_dataset(data, 1.0, 1); }, "between 0 and 1");
}

}  // namespace
}  // namespace haste
