// Dataset statistics on a dataset small enough to count by hand, and the `data stats` /
// `data convert` commands end to end.
#include <gtest/gtest.h>

#include <haste/dataset.hpp>
#include <haste/dataset_stats.hpp>
#include <nlohmann/json.hpp>

#include "data/data_test_files.hpp"
#include "test_util/run_cli.hpp"

namespace haste {
namespace {

using test_util::run_cli;
using test_util::same_matrix;

// 6 points, 10 labels. Label frequencies: 0:4, 1:2, 2:1, 3:1, 5:1, the rest 0.
const char* kData =
    "6 8 10\n"
    "0,1 0:1 3:1\n"
    "0,1 1:1\n"
    "0 2:1 4:1 5:1\n"
    "0,2,3\n"
    " 7:1\n"
    "5 6:1\n";

class StatsTest : public test_util::DataFilesTest {};

TEST_F(StatsTest, CountsByHand) {
  DatasetStats s = compute_stats(read_xc(write_raw("d.txt", kData), parse_only()));
  EXPECT_EQ(s.points, 6);
  EXPECT_EQ(s.features, 8);
  EXPECT_EQ(s.labels, 10);
  EXPECT_FALSE(s.dense_features);
  EXPECT_EQ(s.positives, 9);
  EXPECT_EQ(s.labels_used, 5);
  EXPECT_DOUBLE_EQ(s.labels_per_point, 9.0 / 6);
  EXPECT_EQ(s.feature_nonzeros, 8);
  EXPECT_DOUBLE_EQ(s.feature_nonzeros_per_point, 8.0 / 6);
  // {0,1} twice, {0}, {0,2,3}, {}, {5}.
  EXPECT_EQ(s.distinct_labelsets, 5);
  EXPECT_EQ(s.points_without_labels, 1);

  // All labels, sorted: 0 0 0 0 0 1 1 1 2 4.
  EXPECT_EQ(s.frequency_all.min, 0);
  EXPECT_DOUBLE_EQ(s.frequency_all.p25, 0);    // position 2.25
  EXPECT_DOUBLE_EQ(s.frequency_all.p50, 0.5);  // position 4.5: between 0 and 1
  EXPECT_DOUBLE_EQ(s.frequency_all.p75, 1);    // position 6.75
  EXPECT_DOUBLE_EQ(s.frequency_all.p90, 2.2);  // position 8.1: 2 + 0.1 * (4 - 2)
  EXPECT_EQ(s.frequency_all.max, 4);
  // Used labels: 1 1 1 2 4.
  EXPECT_EQ(s.frequency_used.min, 1);
  EXPECT_DOUBLE_EQ(s.frequency_used.p50, 1);
  EXPECT_DOUBLE_EQ(s.frequency_used.p75, 2);
  EXPECT_DOUBLE_EQ(s.frequency_used.p99, 4 - 0.04 * 2);  // position 3.96
  EXPECT_EQ(s.frequency_used.max, 4);

  // Head: ceil(10% of 10) = 1 label (label 0) with 4 of 9 positives.
  EXPECT_EQ(s.head_labels, 1);
  EXPECT_DOUBLE_EQ(s.head_positive_fraction, 4.0 / 9);
  EXPECT_EQ(s.head_min_frequency, 4);
  EXPECT_EQ(s.labels_below_5, 5);
  EXPECT_EQ(s.labels_with_1, 3);
}

TEST_F(StatsTest, EmptyDatasetHasZeros) {
  DatasetStats s = compute_stats(read_xc(write_raw("d.txt", "0 3 0\n"), parse_only()));
  EXPECT_EQ(s.points, 0);
  EXPECT_EQ(s.labels_used, 0);
  EXPECT_EQ(s.head_labels, 0);
  EXPECT_EQ(s.distinct_labelsets, 0);
  EXPECT_FALSE(stats_table(s).empty());
  EXPECT_EQ(nlohmann::json::parse(stats_json(s))["rows"], 0);
}

TEST_F(StatsTest, JsonHasTheCheckXcKeys) {
  DatasetStats s = compute_stats(read_xc(write_raw("d.txt", kData), parse_only()));
  auto j = nlohmann::json::parse(stats_json(s));
  EXPECT_EQ(j["rows"], 6);
  EXPECT_EQ(j["features"], 8);
  EXPECT_EQ(j["labels"], 10);
  EXPECT_EQ(j["labels_used"], 5);
  EXPECT_EQ(j["distinct_labelsets"], 5);
  EXPECT_EQ(j["rows_without_labels"], 1);
  EXPECT_DOUBLE_EQ(j["labels_per_row"].get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(j["feat_nnz_per_row"].get<double>(), 8.0 / 6);
  EXPECT_EQ(j["head"]["labels"], 1);
  EXPECT_EQ(j["tail"]["labels_with_1"], 3);
  EXPECT_DOUBLE_EQ(j["label_frequency"]["all"]["p90"].get<double>(), 2.2);
}

TEST_F(StatsTest, CliStatsReportsBadInputClearly) {
  auto bad = write_raw("bad.txt", "2 8 10\n0 1:1\n");
  auto result = run_cli({"data", "stats", "--no-cache", bad.string()});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.error_output.find("bad.txt:2: the file ends after 1 rows"), std::string::npos)
      << result.error_output;
  EXPECT_EQ(run_cli({"data", "stats", (dir_ / "missing.txt").string()}).exit_code, 1);
  EXPECT_EQ(run_cli({"data", "stats", "--no-cache", write_raw("d.txt", kData).string()}).exit_code,
            0);
}

TEST_F(StatsTest, CliConvertsSingleToSplitAndBack) {
  auto single = write_raw("d.txt", kData);
  auto features = dir_ / "X.txt.gz";
  auto labels = dir_ / "Y.txt.bz2";
  auto back = dir_ / "back.txt.xz";
  ASSERT_EQ(run_cli({"data", "convert", "--no-cache", single.string(), "--out", features.string(),
                     "--out-labels", labels.string()})
                .exit_code,
            0);
  ASSERT_EQ(run_cli({"data", "convert", "--no-cache", features.string(), labels.string(), "--out",
                     back.string()})
                .exit_code,
            0);
  Dataset original = read_xc(single, parse_only());
  Dataset split = read_xc_split(features, labels, parse_only());
  Dataset round_trip = read_xc(back, parse_only());
  EXPECT_TRUE(same_matrix(split.features, original.features));
  EXPECT_TRUE(same_matrix(split.labels, original.labels));
  EXPECT_TRUE(same_matrix(round_trip.features, original.features));
  EXPECT_TRUE(same_matrix(round_trip.labels, original.labels));
  // A failed conversion leaves no output behind.
  auto bad = write_raw("bad.txt", "2 8 10\n0 1:1\n");
  auto nothing = dir_ / "nothing.txt";
  EXPECT_EQ(run_cli({"data", "convert", bad.string(), "--out", nothing.string()}).exit_code, 1);
  EXPECT_FALSE(std::filesystem::exists(nothing));
}

}  // namespace
}  // namespace haste
