// Reading well-formed XC files: the single-file, split and matrix layouts, the liberties real
// files take (unsorted ids, CRLF, missing final newline, trailing blank line) and the bundled
// debdeps dataset.
#include <gtest/gtest.h>

#include <haste/dataset.hpp>
#include <vector>

#include "data/data_test_files.hpp"

namespace haste {
namespace {

using test_util::DataFilesTest;
using Ids = std::vector<int32_t>;
using Values = std::vector<float>;

Ids row_ids(const CsrMatrix& m, int64_t row) {
  auto span = m.row_indices(row);
  return {span.begin(), span.end()};
}
Values row_values(const CsrMatrix& m, int64_t row) {
  auto span = m.row_values(row);
  return {span.begin(), span.end()};
}

class XcReaderTest : public DataFilesTest {};

TEST_F(XcReaderTest, ReadsSingleFile) {
  auto file = write_raw("a.txt",
                        "4 6 5\n"
                        "0,3 1:0.5 4:2\n"
                        " 0:1.25 5:-3e-2\n"  // no labels
                        "2,4\n"              // labels, no features
                        "\n");               // neither
  Dataset data = read_xc(file, parse_only());
  EXPECT_EQ(data.num_points(), 4);
  EXPECT_EQ(data.num_features(), 6);
  EXPECT_EQ(data.num_labels(), 5);
  EXPECT_TRUE(data.labels.values.empty());
  EXPECT_EQ(row_ids(data.labels, 0), (Ids{0, 3}));
  EXPECT_EQ(row_ids(data.labels, 1), Ids{});
  EXPECT_EQ(row_ids(data.labels, 2), (Ids{2, 4}));
  EXPECT_EQ(row_ids(data.labels, 3), Ids{});
  EXPECT_EQ(row_ids(data.features, 0), (Ids{1, 4}));
  EXPECT_EQ(row_values(data.features, 0), (Values{0.5f, 2.0f}));
  EXPECT_EQ(row_ids(data.features, 1), (Ids{0, 5}));
  EXPECT_EQ(row_values(data.features, 1), (Values{1.25f, -3e-2f}));
  EXPECT_EQ(data.features.row_indices(2).size(), 0u);
  EXPECT_EQ(data.features.row_indices(3).size(), 0u);
}

TEST_F(XcReaderTest, SortsUnsortedIdsWithTheirValues) {
  auto file = write_raw("a.txt", "1 10 10\n9,2,5 7:0.7 3:0.3 8:0.8 0:1e-3\n");
  Dataset data = read_xc(file, parse_only());
  EXPECT_EQ(row_ids(data.labels, 0), (Ids{2, 5, 9}));
  EXPECT_EQ(row_ids(data.features, 0), (Ids{0, 3, 7, 8}));
  EXPECT_EQ(row_values(data.features, 0), (Values{1e-3f, 0.3f, 0.7f, 0.8f}));
}

TEST_F(XcReaderTest, AcceptsCrlfTabsNoFinalNewlineAndTrailingBlankLines) {
  Dataset expected = read_xc(write_raw("unix.txt", "2 3 3\n0 1:1 2:2\n1,2 0:3\n"), parse_only());
  for (const char* text : {"2 3 3\r\n0 1:1 2:2\r\n1,2 0:3\r\n", "2 3 3\n0 1:1 2:2\n1,2 0:3",
                           "2 3 3\r\n0 1:1 2:2\r\n1,2 0:3\r", "2 3 3\n0 1:1 2:2\n1,2 0:3\n\n",
                           "2 3 3\n0\t1:1  2:2 \n1,2\t0:3\n\r\n  \n"}) {
    Dataset data = read_xc(write_raw("variant.txt", text), parse_only());
    EXPECT_TRUE(test_util::same_matrix(data.features, expected.features)) << text;
    EXPECT_TRUE(test_util::same_matrix(data.labels, expected.labels)) << text;
  }
}

TEST_F(XcReaderTest, ReadsEmptyDataset) {
  Dataset data = read_xc(write_raw("a.txt", "0 7 3\n"), parse_only());
  EXPECT_EQ(data.num_points(), 0);
  EXPECT_EQ(data.num_features(), 7);
  EXPECT_EQ(data.num_labels(), 3);
}

TEST_F(XcReaderTest, ReadsSplitFiles) {
  auto features = write_raw("trn_X_Xf.txt", "3 4\n0:1 3:0.25\n\n2:5\n");
  auto labels = write_raw("trn_X_Y.txt", "3 6\n5:1 1:1\n0:1\n\n");
  Dataset data = read_xc_split(features, labels, parse_only());
  EXPECT_EQ(data.num_points(), 3);
  EXPECT_EQ(data.num_features(), 4);
  EXPECT_EQ(data.num_labels(), 6);
  EXPECT_TRUE(data.labels.values.empty());
  EXPECT_EQ(row_ids(data.labels, 0), (Ids{1, 5}));
  EXPECT_EQ(row_ids(data.labels, 2), Ids{});
  EXPECT_EQ(row_ids(data.features, 1), Ids{});
  EXPECT_EQ(row_values(data.features, 2), Values{5.0f});

  // Label files written as bare ids read the same.
  auto bare = write_raw("bare_Y.txt", "3 6\n5 1\n0\n\n");
  EXPECT_TRUE(
      test_util::same_matrix(read_xc_split(features, bare, parse_only()).labels, data.labels));
  // read_dataset picks the layout from the number of paths.
  EXPECT_TRUE(
      test_util::same_matrix(read_dataset(features, labels, parse_only()).features, data.features));
}

TEST_F(XcReaderTest, MatrixFileKeepsAndSortsScores) {
  auto file = write_raw("pred.txt", "2 100\n42:0.9 7:0.95 99:-1.5\n\n");
  CsrMatrix scores = read_xc_matrix(file, parse_only());
  EXPECT_EQ(scores.rows, 2);
  EXPECT_EQ(scores.cols, 100);
  EXPECT_EQ(row_ids(scores, 0), (Ids{7, 42, 99}));
  EXPECT_EQ(row_values(scores, 0), (Values{0.95f, 0.9f, -1.5f}));
  EXPECT_EQ(scores.row_indices(1).size(), 0u);
}

TEST_F(XcReaderTest, ReadsBundledDebdeps) {
  const std::filesystem::path file =
      std::filesystem::path(HASTE_SOURCE_DIR) / "data/debdeps/xc/debdeps_test.txt.xz";
  if (!std::filesystem::exists(file)) GTEST_SKIP() << "no bundled dataset at " << file;
  Dataset data = read_xc(file, parse_only());
  // The numbers in ../shared/data/README.md.
  EXPECT_EQ(data.num_points(), 11227);
  EXPECT_EQ(data.num_features(), 23821);
  EXPECT_EQ(data.num_labels(), 22371);
  for (int64_t row = 0; row < data.num_points(); ++row) {
    auto ids = data.features.row_indices(row);
    ASSERT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  }
}

}  // namespace
}  // namespace haste
