// Every class of bad input gives a haste::Error that names the file, the line and the problem;
// nothing crashes, hangs or silently drops data.
#include <gtest/gtest.h>

#include <haste/dataset.hpp>
#include <haste/error.hpp>
#include <random>
#include <string>

#include "data/data_test_files.hpp"
#include "test_util/expect_error.hpp"

namespace haste {
namespace {

using test_util::DataFilesTest;

class BadInputTest : public DataFilesTest {
 protected:
  // Reads `text` as a single-file dataset and expects an error that starts with
  // "<file>:<line>:" and mentions `needle`.
  void expect_single_file_error(const std::string& text, int64_t line, const std::string& needle) {
    auto file = write_raw("bad.txt", text);
    expect_error_at(file, line, needle, [&] { read_xc(file, parse_only()); });
  }

  template <typename F>
  void expect_error_at(const std::filesystem::path& file, int64_t line, const std::string& needle,
                       F&& read) {
    std::string where = file.string() + ":" + std::to_string(line) + ":";
    try {
      read();
      ADD_FAILURE() << "no error for input expected to fail with \"" << needle << "\"";
    } catch (const Error& e) {
      std::string message = e.what();
      EXPECT_EQ(message.rfind(where, 0), 0u)
          << "expected to start with " << where << ": " << message;
      EXPECT_NE(message.find(needle), std::string::npos) << message;
    }
  }
};

TEST_F(BadInputTest, EmptyFile) {
  auto file = write_raw("empty.txt", "");
  test_util::expect_error([&] { read_xc(file, parse_only()); }, "empty.txt: empty file");
  auto xz = write_text("empty.txt.xz", "");
  test_util::expect_error([&] { read_xc(xz, parse_only()); }, "empty file");
}

TEST_F(BadInputTest, MissingOrMalformedHeader) {
  expect_single_file_error("0,1 2:1\n", 1, "is the header line missing?");
  expect_single_file_error("3 4\n", 1, "expected 'N F L'");
  expect_single_file_error("3 4\n", 1, "header of a split-format file");
  expect_single_file_error("3 4 5 6\n", 1, "malformed header");
  expect_single_file_error("a b c\n", 1, "malformed header");
  expect_single_file_error("-1 4 5\n", 1, "malformed header");
  expect_single_file_error("1 4 5x\n0 1:1\n", 1, "malformed header");
  expect_single_file_error("1 4 99999999999\n0 1:1\n", 1, "at most 2147483647");
  auto features = write_raw("X.txt", "1 2 3\n0:1\n");
  auto labels = write_raw("Y.txt", "1 2\n0:1\n");
  expect_error_at(features, 1, "expected 'N F' (rows, features)",
                  [&] { read_xc_split(features, labels, parse_only()); });
  expect_error_at(features, 1, "give that file alone",
                  [&] { read_xc_split(features, labels, parse_only()); });
}

TEST_F(BadInputTest, FewerRowsThanTheHeaderSays) {
  expect_single_file_error("3 4 5\n0 1:1\n1 2:1\n", 3,
                           "ends after 2 rows, but its header "
                           "declares 3 (truncated?)");
  expect_single_file_error("3 4 5\n", 1, "ends after 0 rows");
}

TEST_F(BadInputTest, MoreRowsThanTheHeaderSays) {
  expect_single_file_error("1 4 5\n0 1:1\n1 2:1\n", 3, "more rows than the 1");
  // A blank line inside the data is an (empty) row, so the count catches a stray one.
  expect_single_file_error("2 4 5\n0 1:1\n\n1 2:1\n", 4, "more rows than the 2");
}

TEST_F(BadInputTest, IdsOutOfRange) {
  expect_single_file_error("1 4 5\n5 1:1\n", 2, "label id 5 is out of range");
  expect_single_file_error("1 4 5\n0 4:1\n", 2, "feature id 4 is out of range");
  expect_single_file_error("1 4 5\n-1 1:1\n", 2, "negative label id");
  expect_single_file_error("1 4 5\n0 -2:1\n", 2, "negative feature id");
  expect_single_file_error("1 4 5\n0 99999999999999999999:1\n", 2, "too large");
  expect_single_file_error("1 4 5\n99999999999999999999 1:1\n", 2, "too large");
  auto features = write_raw("X.txt", "1 4\n0:1\n");
  auto labels = write_raw("Y.txt", "1 3\n3:1\n");
  expect_error_at(labels, 2, "label id 3 is out of range",
                  [&] { read_xc_split(features, labels, parse_only()); });
}

TEST_F(BadInputTest, DuplicateIdsInARow) {
  expect_single_file_error("1 4 5\n1,1 1:1\n", 2, "label 1 appears twice");
  expect_single_file_error("1 4 5\n3,1,3 1:1\n", 2, "label 3 appears twice");
  expect_single_file_error("1 4 5\n0 1:1 1:2\n", 2, "feature 1 appears twice");
  expect_single_file_error("1 4 5\n0 2:1 1:1 2:2\n", 2, "feature 2 appears twice");
}

TEST_F(BadInputTest, NonFiniteValues) {
  for (const char* value : {"nan", "NaN", "inf", "-inf", "infinity", "1e39"}) {
    expect_single_file_error(std::string("1 4 5\n0 1:") + value + "\n", 2, "feature 1");
  }
  auto file = write_raw("scores.txt", "1 4\n2:nan\n");
  expect_error_at(file, 2, "values must be finite", [&] { read_xc_matrix(file, parse_only()); });
}

TEST_F(BadInputTest, MalformedTokens) {
  expect_single_file_error("1 4 5\n0 3:\n", 2, "malformed feature '3:'");
  expect_single_file_error("1 4 5\n0 :1\n", 2, "malformed feature ':1'");
  expect_single_file_error("1 4 5\n0 a:1\n", 2, "malformed feature 'a:1'");
  expect_single_file_error("1 4 5\n0 1:x\n", 2, "malformed feature '1:x'");
  expect_single_file_error("1 4 5\n0 1:2x\n", 2, "malformed feature '1:2x'");
  expect_single_file_error("1 4 5\n0 1:2:3\n", 2, "malformed feature '1:2:3'");
  expect_single_file_error("1 4 5\n0 1\n", 2, "malformed feature '1'");
  expect_single_file_error("1 4 5\n0 1:1 garbage\n", 2, "malformed feature 'garbage'");
  expect_single_file_error("1 4 5\n1,,2 1:1\n", 2, "empty label id");
  expect_single_file_error("1 4 5\n1,2, 1:1\n", 2, "empty label id");
  expect_single_file_error("1 4 5\n,1 1:1\n", 2, "empty label id");
  expect_single_file_error("1 4 5\nx 1:1\n", 2, "malformed label id 'x'");
  expect_single_file_error("1 4 5\n1:1 2:1\n", 2, "a row without labels must start with a space");
}

TEST_F(BadInputTest, TruncatedLastLine) {
  // The last line stops mid-token and has no newline.
  expect_single_file_error("2 4 5\n0 1:1\n1 2:", 3, "is the file truncated?");
  expect_single_file_error("2 4 5\n0 1:1\n1,", 3, "is the file truncated?");
  // It parses, but rows are missing.
  expect_single_file_error("3 4 5\n0 1:1\n1 2:0.", 3, "(truncated?)");
}

TEST_F(BadInputTest, SplitFilesWithDifferentRowCounts) {
  auto features = write_raw("X.txt", "2 4\n0:1\n1:1\n");
  auto labels = write_raw("Y.txt", "3 5\n0:1\n1:1\n2:1\n");
  test_util::expect_error([&] { read_xc_split(features, labels, parse_only()); },
                          "X.txt has 2 rows but " + labels.string() + " has 3");
}

TEST_F(BadInputTest, MissingFileAndDirectory) {
  test_util::expect_error([&] { read_xc(dir_ / "nope.txt", parse_only()); }, "no such file");
  test_util::expect_error([&] { read_xc(dir_, parse_only()); }, "is a directory");
}

// Random bytes, and random damage to a valid file, only ever give haste::Error.
TEST_F(BadInputTest, GarbageNeverCrashes) {
  std::mt19937 rng(11);
  const std::string valid = "3 6 4\n0,3 1:0.5 4:2\n 0:1.25 5:-3e-2\n2\n";
  const std::string alphabet = "0123456789 ,:.-e\n\r\tax";
  for (int trial = 0; trial < 2000; ++trial) {
    std::string text = valid;
    if (trial % 4 == 0) {
      text.resize(rng() % 64);
      for (char& c : text) c = static_cast<char>(rng());
    } else {
      for (int edits = 1 + static_cast<int>(rng() % 3); edits > 0; --edits) {
        text[rng() % text.size()] = alphabet[rng() % alphabet.size()];
      }
    }
    auto file = write_raw("fuzz.txt", text);
    // The same bytes as a split pair and as a matrix file exercise the other readers.
    try {
      read_xc_split(file, file, parse_only());
    } catch (const Error&) {
    }
    try {
      read_xc_matrix(file, parse_only());
    } catch (const Error&) {
    }
    try {
      Dataset data = read_xc(file, parse_only());
      // Whatever reads without error is a consistent dataset.
      ASSERT_EQ(data.features.rows, data.labels.rows);
      ASSERT_EQ(static_cast<int64_t>(data.labels.indptr.size()), data.labels.rows + 1);
      ASSERT_EQ(data.features.values.size(), data.features.indices.size());
    } catch (const Error&) {
    }
  }
}

}  // namespace
}  // namespace haste
