// The binary cache returns exactly what parsing returns, notices stale and corrupt entries
// (falling back to the text and rewriting the entry), and never fails a read it cannot help.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <haste/dataset.hpp>
#include <haste/error.hpp>
#include <optional>
#include <string>

#include "data/binary_cache.hpp"
#include "data/data_test_files.hpp"

namespace haste {
namespace {

namespace fs = std::filesystem;
using test_util::same_matrix;

class CacheTest : public test_util::DataFilesTest {
 protected:
  ReadOptions cached() const {
    ReadOptions options;
    options.cache_dir = dir_ / "cache";
    options.show_progress = false;
    return options;
  }
  fs::path single_file(const std::string& text) { return write_raw("data.txt", text); }

  static void expect_same(const Dataset& a, const Dataset& b) {
    EXPECT_TRUE(same_matrix(a.features, b.features));
    EXPECT_TRUE(same_matrix(a.labels, b.labels));
  }
};

const char* kText = "3 6 5\n0,3 1:0.5 4:2\n 0:1.25 5:-3e-2\n2,4\n";

TEST_F(CacheTest, SecondReadComesFromTheCacheAndMatches) {
  auto file = single_file(kText);
  Dataset parsed = read_xc(file, parse_only());
  fs::path entry = cache_file_for(file, "xc", cached());
  ASSERT_FALSE(entry.empty());
  EXPECT_FALSE(fs::exists(entry));

  expect_same(read_xc(file, cached()), parsed);
  ASSERT_TRUE(fs::exists(entry));
  auto hit = load_cached(file, "xc", cached());
  ASSERT_TRUE(hit.has_value());
  ASSERT_EQ(hit->size(), 2u);
  EXPECT_TRUE(same_matrix((*hit)[0], parsed.features));
  EXPECT_TRUE(same_matrix((*hit)[1], parsed.labels));
  expect_same(read_xc(file, cached()), parsed);
}

TEST_F(CacheTest, CacheHitDoesNotReadTheText) {
  // Replace the cached entry's source with a same-size file of different bytes but the old
  // mtime and inode: only a cache hit can still return the old rows. (This is the documented
  // limit of a metadata key; it proves the hit path is taken.)
  auto file = single_file(kText);
  Dataset first = read_xc(file, cached());
  auto mtime = fs::last_write_time(file);
  std::string changed = kText;
  changed[6] = '1';  // "0,3" -> "1,3"
  {
    std::ofstream out(file, std::ios::binary | std::ios::in | std::ios::out);
    out << changed;
  }
  fs::last_write_time(file, mtime);
  expect_same(read_xc(file, cached()), first);
  EXPECT_FALSE(same_matrix(read_xc(file, parse_only()).labels, first.labels));
}

TEST_F(CacheTest, StaleEntryIsReplaced) {
  auto file = single_file(kText);
  read_xc(file, cached());
  fs::path old_entry = cache_file_for(file, "xc", cached());
  // New content, new mtime.
  write_raw("data.txt", "1 6 5\n4 5:7\n");
  fs::last_write_time(file, fs::last_write_time(file) + std::chrono::seconds(5));
  EXPECT_FALSE(load_cached(file, "xc", cached()).has_value());
  Dataset data = read_xc(file, cached());
  EXPECT_EQ(data.num_points(), 1);
  expect_same(data, read_xc(file, parse_only()));
  // Same path, same entry name: the stale entry was overwritten, not joined by another.
  EXPECT_EQ(cache_file_for(file, "xc", cached()), old_entry);
  EXPECT_TRUE(load_cached(file, "xc", cached()).has_value());
}

TEST_F(CacheTest, CorruptOrTruncatedEntryFallsBackAndIsRewritten) {
  auto file = single_file(kText);
  Dataset parsed = read_xc(file, parse_only());
  read_xc(file, cached());
  fs::path entry = cache_file_for(file, "xc", cached());
  std::string bytes = read_raw(entry);
  ASSERT_GT(bytes.size(), 100u);

  std::string flipped = bytes;
  flipped[flipped.size() - 20] ^= 0x01;  // inside the payload: only the checksum catches it
  std::string cut = bytes.substr(0, bytes.size() / 2);
  std::string garbage(bytes.size(), 'x');
  for (const std::string& damaged : {flipped, cut, garbage, std::string()}) {
    { std::ofstream(entry, std::ios::binary) << damaged; }
    EXPECT_FALSE(load_cached(file, "xc", cached()).has_value());
    expect_same(read_xc(file, cached()), parsed);
    EXPECT_EQ(read_raw(entry), bytes);  // rewritten
  }
}

TEST_F(CacheTest, UnwritableCacheDirDoesNotFailTheRead) {
  auto file = single_file(kText);
  // A cache "directory" below a regular file cannot be created, even by root.
  write_raw("not_a_dir", "x");
  ReadOptions options = cached();
  options.cache_dir = dir_ / "not_a_dir" / "cache";
  expect_same(read_xc(file, options), read_xc(file, parse_only()));
  EXPECT_FALSE(load_cached(file, "xc", options).has_value());
}

TEST_F(CacheTest, NoCacheWritesNothing) {
  auto file = single_file(kText);
  ReadOptions options = cached();
  options.use_cache = false;
  read_xc(file, options);
  EXPECT_FALSE(fs::exists(dir_ / "cache"));
}

TEST_F(CacheTest, KindsAndSplitFilesAreCachedSeparately) {
  auto features = write_raw("X.txt", "2 4\n0:1 3:0.25\n2:5\n");
  auto labels = write_raw("Y.txt", "2 6\n5:0.5 1:2\n0:1\n");
  Dataset parsed = read_xc_split(features, labels, parse_only());
  expect_same(read_xc_split(features, labels, cached()), parsed);
  expect_same(read_xc_split(features, labels, cached()), parsed);
  // The same label file read as a matrix keeps its values: a different entry.
  CsrMatrix scores = read_xc_matrix(labels, cached());
  EXPECT_EQ(scores.values, (std::vector<float>{2.0f, 0.5f, 1.0f}));
  EXPECT_TRUE(read_xc_split(features, labels, cached()).labels.values.empty());
}

TEST_F(CacheTest, BadInputIsNotCached) {
  auto file = single_file("2 6 5\n0 1:1\n");
  EXPECT_THROW(read_xc(file, cached()), Error);
  EXPECT_FALSE(fs::exists(cache_file_for(file, "xc", cached())));
  EXPECT_THROW(read_xc(file, cached()), Error);
}

// Sets or clears an environment variable for one scope, then restores it.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) saved_ = old;
    value ? ::setenv(name, value, 1) : ::unsetenv(name);
  }
  ~ScopedEnv() { saved_ ? ::setenv(name_, saved_->c_str(), 1) : ::unsetenv(name_); }

 private:
  const char* name_;
  std::optional<std::string> saved_;
};

TEST(CacheDirTest, DefaultFollowsTheEnvironment) {
  {
    ScopedEnv haste("HASTE_CACHE_DIR", "/some/where");
    EXPECT_EQ(default_cache_dir(), fs::path("/some/where"));
  }
  ScopedEnv haste("HASTE_CACHE_DIR", nullptr);
  {
    ScopedEnv xdg("XDG_CACHE_HOME", "/xdg");
    EXPECT_EQ(default_cache_dir(), fs::path("/xdg/haste"));
  }
  ScopedEnv xdg("XDG_CACHE_HOME", nullptr);
  {
    ScopedEnv home("HOME", "/home/someone");
    EXPECT_EQ(default_cache_dir(), fs::path("/home/someone/.cache/haste"));
  }
  ScopedEnv home("HOME", nullptr);
  EXPECT_TRUE(default_cache_dir().empty());
}

}  // namespace
}  // namespace haste
