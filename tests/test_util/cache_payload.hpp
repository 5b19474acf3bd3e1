// Writes a binary cache file (src/data/binary_cache.hpp) around a given payload, with the header
// the reader expects for `source` and a matching checksum, so that tests and the cache fuzzer
// reach the matrix parsing that random bytes would never get past the header to.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

#include "data/binary_cache.hpp"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace haste::test_util {

class CachePayloadWriter {
 public:
  // The header is taken from a real entry with no matrices: its bytes are the header, then the
  // 8-byte matrix count and the 8-byte checksum.
  CachePayloadWriter(const std::filesystem::path& source, std::string_view kind,
                     const ReadOptions& options) {
    store_cached(source, kind, options, {});
    file_ = cache_file_for(source, kind, options);
    std::ifstream in(file_, std::ios::binary);
    header_.assign(std::istreambuf_iterator<char>(in), {});
    if (header_.size() < 16) std::abort();  // the cache directory is not writable
    header_.resize(header_.size() - 16);
  }

  // `payload`: the matrix count, then each matrix's sizes and arrays.
  void write(std::string_view payload) const {
    const uint64_t checksum = XXH3_64bits(payload.data(), payload.size());
    std::ofstream out(file_, std::ios::binary | std::ios::trunc);
    out << header_ << payload;
    out.write(reinterpret_cast<const char*>(&checksum), sizeof checksum);
  }

 private:
  std::filesystem::path file_;
  std::string header_;
};

}  // namespace haste::test_util
