// Dense features from .npy: files written by NumPy itself (tests/data/fixtures), hand-built
// variants, and every way a .npy can be wrong.
#include <gtest/gtest.h>

#include <cstring>
#include <haste/dataset.hpp>
#include <haste/error.hpp>
#include <string>
#include <vector>

#include "data/data_test_files.hpp"
#include "test_util/expect_error.hpp"

namespace haste {
namespace {

namespace fs = std::filesystem;
using test_util::expect_error;

const fs::path kFixtures = fs::path(HASTE_SOURCE_DIR) / "tests/data/fixtures";

// (arange(12).reshape(3, 4) - 5.5) / 4, row-major: what every fixture holds.
std::vector<float> expected_values() {
  std::vector<float> values;
  for (int i = 0; i < 12; ++i) values.push_back((static_cast<float>(i) - 5.5f) / 4.0f);
  return values;
}

// A version-1 .npy with the given header dict and raw data bytes.
std::string npy_bytes(const std::string& dict, const std::string& data) {
  std::string header = dict;
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xFF);
  out += static_cast<char>(header.size() >> 8);
  return out + header + data;
}

template <typename T>
std::string raw(const std::vector<T>& values) {
  return {reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T)};
}

class NpyTest : public test_util::DataFilesTest {};

TEST_F(NpyTest, ReadsFilesWrittenByNumpy) {
  for (const char* name : {"dense_3x4_f4.npy", "dense_3x4_f8_fortran.npy", "dense_3x4_f4_v2.npy"}) {
    DenseMatrix m = read_npy(kFixtures / name);
    EXPECT_EQ(m.rows, 3) << name;
    EXPECT_EQ(m.cols, 4) << name;
    EXPECT_EQ(m.data, expected_values()) << name;
  }
}

TEST_F(NpyTest, ReadsCompressedNpy) {
  std::string bytes = read_raw(kFixtures / "dense_3x4_f4.npy");
  auto file = write_text("dense.npy.xz", bytes);
  EXPECT_EQ(read_npy(file).data, expected_values());
}

TEST_F(NpyTest, DenseFeaturesWithLabels) {
  auto labels = write_raw("Y.txt", "3 5\n0:1\n\n4:1 2:1\n");
  Dataset data = read_dataset(kFixtures / "dense_3x4_f4.npy", labels, parse_only());
  EXPECT_EQ(data.num_points(), 3);
  EXPECT_EQ(data.num_features(), 4);
  EXPECT_EQ(data.num_labels(), 5);
  EXPECT_EQ(data.dense.data, expected_values());
  EXPECT_EQ(data.features.nnz(), 0);

  auto fewer = write_raw("Y2.txt", "2 5\n0:1\n\n");
  expect_error([&] { read_dataset(kFixtures / "dense_3x4_f4.npy", fewer, parse_only()); },
               "dense_3x4_f4.npy has 3 rows but");
  expect_error([&] { read_dataset(kFixtures / "dense_3x4_f4.npy", std::nullopt, parse_only()); },
               "holds features only");
}

TEST_F(NpyTest, WrongDtype) {
  auto file = write_raw("i8.npy", npy_bytes("{'descr': '<i8', 'fortran_order': False, "
                                            "'shape': (1, 2), }",
                                            raw(std::vector<int64_t>{1, 2})));
  expect_error([&] { read_npy(file); }, "dtype '<i8' is not supported");
  auto big_endian = write_raw("be.npy", npy_bytes("{'descr': '>f4', 'fortran_order': False, "
                                                  "'shape': (1, 2), }",
                                                  raw(std::vector<float>{1, 2})));
  expect_error([&] { read_npy(big_endian); }, "dtype '>f4' is not supported");
}

TEST_F(NpyTest, WrongShape) {
  auto one_d = write_raw("1d.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, "
                                             "'shape': (3,), }",
                                             raw(std::vector<float>{1, 2, 3})));
  expect_error([&] { read_npy(one_d); },
               "expected a 2-D array (points x features), got shape (3,)");
  auto three_d = write_raw("3d.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, "
                                               "'shape': (1, 1, 2), }",
                                               raw(std::vector<float>{1, 2})));
  expect_error([&] { read_npy(three_d); }, "got shape (1,1,2,)");
  auto extra = write_raw("extra.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, "
                                                "'shape': (1, 2), }",
                                                raw(std::vector<float>{1, 2, 3})));
  expect_error([&] { read_npy(extra); }, "bytes after the array data");
}

TEST_F(NpyTest, TruncatedData) {
  std::string bytes = read_raw(kFixtures / "dense_3x4_f4.npy");
  auto cut = write_raw("cut.npy", bytes.substr(0, bytes.size() - 5));
  expect_error([&] { read_npy(cut); }, "ends after 43 of 48 bytes (truncated?)");
  auto cut_xz = write_text("cut.npy.xz", bytes.substr(0, bytes.size() - 5));
  expect_error([&] { read_npy(cut_xz); }, "ends after 43 of 48 bytes (truncated?)");
  auto header_only = write_raw("header.npy", bytes.substr(0, 40));
  expect_error([&] { read_npy(header_only); }, "header is truncated");
  auto huge = write_raw("huge.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, "
                                              "'shape': (1000000000, 1000000000), }",
                                              ""));
  expect_error([&] { read_npy(huge); }, "truncated?");
}

TEST_F(NpyTest, NotNpyOrMalformedHeader) {
  auto text = write_raw("text.npy", "3 4 5\n");
  expect_error([&] { read_npy(text); }, "not a .npy file");
  auto no_shape =
      write_raw("noshape.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False}", ""));
  expect_error([&] { read_npy(no_shape); }, "no 'shape' entry");
}

TEST_F(NpyTest, NonFiniteValues) {
  auto file = write_raw("nan.npy", npy_bytes("{'descr': '<f8', 'fortran_order': False, "
                                             "'shape': (2, 2), }",
                                             raw(std::vector<double>{1, 2, 3, 1e300})));
  expect_error([&] { read_npy(file); }, "row 1, column 1: the value 1e+300 is not a finite");
}

}  // namespace
}  // namespace haste
