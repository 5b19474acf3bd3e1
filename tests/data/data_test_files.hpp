// Scratch files for the data reader tests: a fresh directory per test, files written verbatim
// (or compressed by extension), and read options that keep tests away from the user's cache.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <haste/dataset.hpp>
#include <haste/sparse.hpp>
#include <string>

#include "data/text_io.hpp"

namespace haste::test_util {

class DataFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           ("haste-data-test-" + std::to_string(::getpid()) + "-" + info->test_suite_name() + "-" +
            info->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Exactly these bytes, whatever the name says (for malformed and truncated inputs).
  std::filesystem::path write_raw(const std::string& name, const std::string& bytes) {
    std::filesystem::path file = dir_ / name;
    std::ofstream out(file, std::ios::binary);
    out << bytes;
    return file;
  }

  // Compressed when the name ends in .xz, .gz or .bz2.
  std::filesystem::path write_text(const std::string& name, const std::string& text) {
    std::filesystem::path file = dir_ / name;
    AtomicOutput out(file);
    out.write(text);
    out.commit();
    return file;
  }

  std::string read_raw(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

  // No cache, no progress bar: every read parses the text.
  static ReadOptions parse_only() {
    ReadOptions options;
    options.use_cache = false;
    options.show_progress = false;
    return options;
  }

  std::filesystem::path dir_;
};

inline bool same_matrix(const CsrMatrix& a, const CsrMatrix& b) {
  return a.rows == b.rows && a.cols == b.cols && a.indptr == b.indptr && a.indices == b.indices &&
         a.values == b.values;
}

}  // namespace haste::test_util
