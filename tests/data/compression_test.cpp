// Writers and readers agree exactly, through plain text and each compression, for every layout;
// a compressed file cut short is a clear error, never a crash or a silently short dataset.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <haste/dataset.hpp>
#include <haste/error.hpp>
#include <limits>
#include <random>

#include "data/data_test_files.hpp"
#include "test_util/expect_error.hpp"

namespace haste {
namespace {

using test_util::DataFilesTest;
using test_util::expect_error;
using test_util::same_matrix;

// Random rows with values that stress the float formatting: tiny, huge, subnormal, negative,
// and values with no short decimal form.
Dataset random_dataset(int64_t rows, int64_t num_features, int64_t num_labels, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> count(0, 8);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  const float specials[] = {std::numeric_limits<float>::denorm_min(),
                            std::numeric_limits<float>::min(),
                            std::numeric_limits<float>::max(),
                            -std::numeric_limits<float>::max(),
                            1.0f / 3.0f,
                            16777217.0f,
                            1e-30f,
                            0.1f};
  Dataset data;
  data.features.cols = num_features;
  data.labels.cols = num_labels;
  for (int64_t row = 0; row < rows; ++row) {
    std::vector<int32_t> features, labels;
    std::vector<float> values;
    for (int i = count(rng); i > 0; --i) features.push_back(rng() % num_features);
    for (int i = count(rng); i > 0; --i) labels.push_back(rng() % num_labels);
    std::sort(features.begin(), features.end());
    features.erase(std::unique(features.begin(), features.end()), features.end());
    std::sort(labels.begin(), labels.end());
    labels.erase(std::unique(labels.begin(), labels.end()), labels.end());
    for (size_t i = 0; i < features.size(); ++i) {
      float value = rng() % 4 == 0 ? specials[rng() % std::size(specials)] : uniform(rng);
      values.push_back(value == 0.0f ? 0.5f : value);
    }
    data.features.append_row(features, values);
    data.labels.append_row(labels, {});
  }
  return data;
}

class CompressionTest : public DataFilesTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(CompressionTest, SingleFileRoundTripIsExact) {
  Dataset data = random_dataset(500, 1000, 300, 1);
  auto file = dir_ / (std::string("data.txt") + GetParam());
  write_xc(data, file);
  Dataset back = read_xc(file, parse_only());
  EXPECT_TRUE(same_matrix(back.features, data.features));
  EXPECT_TRUE(same_matrix(back.labels, data.labels));
}

TEST_P(CompressionTest, SplitAndMatrixRoundTripsAreExact) {
  Dataset data = random_dataset(300, 50, 2000, 2);
  auto features = dir_ / (std::string("X.txt") + GetParam());
  auto labels = dir_ / (std::string("Y.txt") + GetParam());
  write_xc_split(data, features, labels);
  Dataset back = read_xc_split(features, labels, parse_only());
  EXPECT_TRUE(same_matrix(back.features, data.features));
  EXPECT_TRUE(same_matrix(back.labels, data.labels));

  auto scores = dir_ / (std::string("scores.txt") + GetParam());
  write_xc_matrix(data.features, scores);
  EXPECT_TRUE(same_matrix(read_xc_matrix(scores, parse_only()), data.features));
}

TEST_P(CompressionTest, TruncatedFileIsAClearError) {
  Dataset data = random_dataset(3000, 1000, 300, 3);
  auto file = dir_ / (std::string("data.txt") + GetParam());
  write_xc(data, file);
  std::string bytes = read_raw(file);
  auto half = write_raw(std::string("half.txt") + GetParam(), bytes.substr(0, bytes.size() / 2));
  // Compressed: the decoder notices; plain: the row count does.
  expect_error([&] { read_xc(half, parse_only()); }, "truncated");
  // Cut anywhere else, the read still fails cleanly (the very first bytes may not even be
  // recognisable as compressed, so only the error type is checked).
  for (size_t size : {size_t{0}, size_t{1}, size_t{5}, size_t{20}, size_t{100}, bytes.size() / 10,
                      bytes.size() * 9 / 10, bytes.size() - 1}) {
    // Plain text without its final newline is still a complete file.
    bool plain = std::strlen(GetParam()) == 0;
    if (plain && size == bytes.size() - 1) continue;
    auto cut = write_raw(std::string("cut.txt") + GetParam(), bytes.substr(0, size));
    EXPECT_THROW(read_xc(cut, parse_only()), Error) << size << " of " << bytes.size();
  }
}

INSTANTIATE_TEST_SUITE_P(Compressions, CompressionTest, ::testing::Values("", ".xz", ".gz", ".bz2"),
                         [](const auto& info) {
                           return std::strlen(info.param) ? std::string(info.param + 1)
                                                          : std::string("plain");
                         });

TEST_F(DataFilesTest, CorruptCompressedDataIsAClearError) {
  Dataset data = random_dataset(2000, 1000, 300, 4);
  for (const char* extension : {".xz", ".gz", ".bz2"}) {
    auto file = dir_ / (std::string("data.txt") + extension);
    write_xc(data, file);
    std::string bytes = read_raw(file);
    for (size_t i = bytes.size() / 3; i < bytes.size() / 3 + 64; ++i) bytes[i] ^= 0x5A;
    auto bad = write_raw(std::string("bad.txt") + extension, bytes);
    try {
      read_xc(bad, parse_only());
      ADD_FAILURE() << extension << ": corrupt data read without an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("bad.txt"), std::string::npos) << e.what();
    }
  }
}

TEST_F(DataFilesTest, WritesDenseFeaturesSparsely) {
  Dataset data;
  data.dense.rows = 2;
  data.dense.cols = 3;
  data.dense.data = {0.0f, 1.5f, 0.0f, 2.0f, 0.0f, -1.0f};
  data.labels.cols = 4;
  data.labels.append_row(std::vector<int32_t>{1, 3}, {});
  data.labels.append_row(std::vector<int32_t>{}, {});
  auto file = dir_ / "dense.txt";
  write_xc(data, file);
  EXPECT_EQ(read_raw(file), "2 3 4\n1,3 1:1.5\n 0:2 2:-1\n");
}

TEST_F(DataFilesTest, MismatchedRowsAreNotWritten) {
  Dataset data = random_dataset(10, 10, 10, 5);
  data.labels.append_row(std::vector<int32_t>{1}, {});
  expect_error([&] { write_xc(data, dir_ / "x.txt"); }, "10 feature rows and 11 label rows");
  EXPECT_FALSE(std::filesystem::exists(dir_ / "x.txt"));
}

}  // namespace
}  // namespace haste
