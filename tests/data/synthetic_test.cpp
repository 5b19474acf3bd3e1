#include <haste/error.hpp>
#include <haste/synthetic.hpp>

#include "test_util/expect_error.hpp"
#include "test_util/run_cli.hpp"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace haste {
namespace {

namespace fs = std::filesystem;

SynthConfig small_config() {
  SynthConfig config;
  config.rows = 3000;
  config.features = 5000;
  config.labels = 2000;
  config.seed = 7;
  return config;
}

bool same_matrix(const CsrMatrix& a, const CsrMatrix& b) {
  return a.rows == b.rows && a.cols == b.cols && a.indptr == b.indptr && a.indices == b.indices &&
         a.values == b.values;
}

bool same_data(const Dataset& a, const Dataset& b) {
  return same_matrix(a.features, b.features) && same_matrix(a.labels, b.labels);
}

std::string read_bytes(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("haste-synth-test-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

TEST(Synthetic, SameSeedGivesSameDataAndAnotherSeedDifferentData) {
  SynthConfig config = small_config();
  Dataset first = make_synthetic(config);
  Dataset again = make_synthetic(config);
  EXPECT_TRUE(same_data(first, again));

  config.seed = 8;
  Dataset other = make_synthetic(config);
  EXPECT_FALSE(same_matrix(first.labels, other.labels));
  EXPECT_FALSE(same_matrix(first.features, other.features));
}

TEST(Synthetic, OutputDoesNotDependOnTheThreadCount) {
  TempDir dir;
  SynthConfig config = small_config();
  const int threads = omp_get_max_threads();

  omp_set_num_threads(1);
  Dataset serial = make_synthetic(config);
  write_synthetic(config, dir / "serial.txt", false);
  omp_set_num_threads(4);
  Dataset parallel = make_synthetic(config);
  write_synthetic(config, dir / "parallel.txt", false);
  omp_set_num_threads(threads);

  EXPECT_TRUE(same_data(serial, parallel));
  std::string bytes = read_bytes(dir / "serial.txt");
  EXPECT_FALSE(bytes.empty());
  EXPECT_EQ(bytes, read_bytes(dir / "parallel.txt"));
}

TEST(Synthetic, FileHasTheXcHeaderAndOneLinePerRow) {
  TempDir dir;
  SynthConfig config = small_config();
  config.rows = 100;
  write_synthetic(config, dir / "data.txt", false);
  std::ifstream in(dir / "data.txt");
  std::string header;
  std::getline(in, header);
  EXPECT_EQ(header, "100 5000 2000");
  int64_t lines = 0;
  for (std::string line; std::getline(in, line);) ++lines;
  EXPECT_EQ(lines, 100);
}

// The streamed file and the in-memory data set are the same rows: values have 4 significant
// digits, which print and parse back exactly.
TEST(Synthetic, WrittenFileReadsBackAsTheGeneratedData) {
  TempDir dir;
  SynthConfig config = small_config();
  write_synthetic(config, dir / "data.txt.gz", false);
  ReadOptions options;
  options.use_cache = false;
  options.show_progress = false;
  Dataset read = read_xc(dir / "data.txt.gz", options);
  Dataset made = make_synthetic(config);
  EXPECT_TRUE(same_matrix(read.labels, made.labels));
  EXPECT_TRUE(same_matrix(read.features, made.features));
}

TEST(Synthetic, ShapesIdsAndNormsAreValid) {
  SynthConfig config = small_config();
  Dataset data = make_synthetic(config);
  ASSERT_EQ(data.num_points(), config.rows);
  ASSERT_EQ(data.features.rows, config.rows);
  EXPECT_EQ(data.num_features(), config.features);
  EXPECT_EQ(data.num_labels(), config.labels);
  EXPECT_TRUE(data.labels.values.empty());

  for (int64_t r = 0; r < config.rows; ++r) {
    auto labels = data.labels.row_indices(r);
    ASSERT_FALSE(labels.empty()) << "row " << r;
    EXPECT_TRUE(std::adjacent_find(labels.begin(), labels.end(), std::greater_equal<>()) ==
                labels.end())
        << "labels of row " << r << " not strictly increasing";
    for (int32_t l : labels) ASSERT_TRUE(l >= 0 && l < config.labels);

    auto features = data.features.row_indices(r);
    auto values = data.features.row_values(r);
    ASSERT_FALSE(features.empty());
    EXPECT_TRUE(std::adjacent_find(features.begin(), features.end(), std::greater_equal<>()) ==
                features.end());
    double norm_squared = 0;
    for (size_t i = 0; i < features.size(); ++i) {
      ASSERT_TRUE(features[i] >= 0 && features[i] < config.features);
      ASSERT_GT(values[i], 0.0f);
      norm_squared += double(values[i]) * values[i];
    }
    EXPECT_NEAR(norm_squared, 1.0, 1e-3);  // values have 4 significant digits
  }
}

TEST(Synthetic, RowCountsMatchTheRequestedMeans) {
  SynthConfig config = small_config();
  config.labels_per_row = 7;
  config.features_per_row = 60;
  Dataset data = make_synthetic(config);
  double labels_per_row = double(data.labels.nnz()) / config.rows;
  double features_per_row = double(data.features.nnz()) / config.rows;
  EXPECT_NEAR(labels_per_row, 7.0, 0.5);
  EXPECT_NEAR(features_per_row, 60.0, 3.0);
}

TEST(Synthetic, LabelFrequenciesFollowAPowerLaw) {
  SynthConfig config = small_config();
  config.rows = 10000;
  Dataset data = make_synthetic(config);
  std::vector<int64_t> frequency(config.labels, 0);
  for (int32_t l : data.labels.indices) ++frequency[l];
  std::vector<int64_t> seen;
  for (int64_t f : frequency) {
    if (f > 0) seen.push_back(f);
  }
  std::sort(seen.rbegin(), seen.rend());
  int64_t median = seen[seen.size() / 2];
  // Zipf(1.1): the top label is on a large share of rows, the median label on a handful.
  EXPECT_GT(seen[0], 100 * median);
  EXPECT_GT(seen[0], config.rows / 5);
  // Least-squares slope of log frequency against log rank over ranks 10..300 (the very top
  // saturates: a label is on a row at most once) is close to -zipf.
  double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (size_t rank = 10; rank <= 300 && rank <= seen.size(); ++rank) {
    double x = std::log(double(rank)), y = std::log(double(seen[rank - 1]));
    n += 1, sx += x, sy += y, sxx += x * x, sxy += x * y;
  }
  double slope = (n * sxy - sx * sy) / (n * sxx - sx * sx);
  EXPECT_NEAR(slope, -config.zipf, 0.3);
}

TEST(Synthetic, TestRowsContinueTheTrainingStream) {
  SynthConfig config = small_config();
  config.rows = 1500;
  Dataset whole = make_synthetic(config);
  SynthConfig tail = config;
  tail.first_row = 1000;
  tail.rows = 500;
  Dataset part = make_synthetic(tail);
  ASSERT_EQ(part.num_points(), 500);
  for (int64_t r = 0; r < 500; ++r) {
    auto a = part.labels.row_indices(r), b = whole.labels.row_indices(1000 + r);
    ASSERT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end()));
    auto fa = part.features.row_values(r), fb = whole.features.row_values(1000 + r);
    ASSERT_TRUE(std::equal(fa.begin(), fa.end(), fb.begin(), fb.end()));
  }
}

// Learnability proxy: a 10-nearest-neighbour vote by feature cosine predicts the top label of a
// held-out row far better than always predicting the most frequent label.
TEST(Synthetic, NearestNeighboursPredictLabelsAboveChance) {
  SynthConfig config = small_config();
  config.rows = 3000;
  Dataset train = make_synthetic(config);
  SynthConfig test_config = config;
  test_config.first_row = config.rows;
  test_config.rows = 300;
  Dataset test = make_synthetic(test_config);

  std::vector<int64_t> frequency(config.labels, 0);
  for (int32_t l : train.labels.indices) ++frequency[l];
  int32_t most_frequent =
      int32_t(std::max_element(frequency.begin(), frequency.end()) - frequency.begin());

  auto has_label = [](const CsrMatrix& labels, int64_t row, int32_t label) {
    auto ids = labels.row_indices(row);
    return std::binary_search(ids.begin(), ids.end(), label);
  };
  std::vector<float> dense(config.features);
  int64_t knn_hits = 0, baseline_hits = 0;
  for (int64_t t = 0; t < test.num_points(); ++t) {
    std::fill(dense.begin(), dense.end(), 0.0f);
    auto ti = test.features.row_indices(t);
    auto tv = test.features.row_values(t);
    for (size_t i = 0; i < ti.size(); ++i) dense[ti[i]] = tv[i];
    std::vector<std::pair<float, int64_t>> similarity;
    for (int64_t r = 0; r < train.num_points(); ++r) {
      auto ri = train.features.row_indices(r);
      auto rv = train.features.row_values(r);
      float dot = 0;
      for (size_t i = 0; i < ri.size(); ++i) dot += dense[ri[i]] * rv[i];
      similarity.emplace_back(dot, r);
    }
    std::partial_sort(similarity.begin(), similarity.begin() + 10, similarity.end(),
                      std::greater<>());
    std::map<int32_t, float> votes;
    for (int k = 0; k < 10; ++k) {
      for (int32_t l : train.labels.row_indices(similarity[k].second)) {
        votes[l] += similarity[k].first;
      }
    }
    auto best = std::max_element(votes.begin(), votes.end(),
                                 [](const auto& a, const auto& b) { return a.second < b.second; });
    knn_hits += has_label(test.labels, t, best->first);
    baseline_hits += has_label(test.labels, t, most_frequent);
  }
  double knn = double(knn_hits) / test.num_points();
  double baseline = double(baseline_hits) / test.num_points();
  EXPECT_GT(knn, baseline + 0.2) << "kNN P@1 " << knn << " vs most-frequent " << baseline;
}

TEST(Synthetic, TenMillionLabelsNeedNoPerLabelMemory) {
  SynthConfig config;
  config.rows = 3000;
  config.features = 100000;
  config.labels = 10'000'000;
  Dataset data = make_synthetic(config);
  EXPECT_EQ(data.num_labels(), 10'000'000);
  EXPECT_EQ(data.num_points(), 3000);
  int32_t max_label = *std::max_element(data.labels.indices.begin(), data.labels.indices.end());
  EXPECT_LT(max_label, 10'000'000);
  EXPECT_GT(max_label, 1'000'000);  // ids are scattered over the whole range
}

// The CLI streams rows: its peak memory (of the child process alone, from wait4) stays small
// with L = 10M.
TEST(Synthetic, CliWithTenMillionLabelsKeepsMemoryBounded) {
  TempDir dir;
  std::string out = (dir / "big.txt.gz").string();
  test_util::CliResult run =
      test_util::run_cli({"data", "synth", "--rows", "20000", "--features", "100000", "--labels",
                          "10000000", "--out", out, "--quiet"});
  EXPECT_EQ(run.exit_code, 0) << run.error_output;
  EXPECT_LT(run.max_rss_kib, 1024 * 1024);  // < 1 GiB
  EXPECT_TRUE(fs::exists(out));
}

TEST(Synthetic, BadSettingsAreErrors) {
  auto expect_config_error = [](auto change, const std::string& message) {
    SynthConfig config = small_config();
    change(config);
    test_util::expect_error([&] { make_synthetic(config); }, message);
  };
  expect_config_error([](SynthConfig& c) { c.labels = 0; }, "labels");
  expect_config_error([](SynthConfig& c) { c.features = 0; }, "features");
  expect_config_error([](SynthConfig& c) { c.rows = -1; }, "rows");
  expect_config_error([](SynthConfig& c) { c.zipf = 0; }, "Zipf");
  expect_config_error([](SynthConfig& c) { c.labels_per_row = 0.5; }, "labels per row");
  expect_config_error([](SynthConfig& c) { c.cluster_size = 0; }, "cluster size");
}

TEST(Synthetic, TinyShapesWork) {
  SynthConfig config;
  config.rows = 50;
  config.features = 1;
  config.labels = 1;
  Dataset data = make_synthetic(config);
  EXPECT_EQ(data.labels.nnz(), 50);
  EXPECT_EQ(data.features.nnz(), 50);
  config.rows = 0;
  EXPECT_EQ(make_synthetic(config).num_points(), 0);
}

}  // namespace
}  // namespace haste
