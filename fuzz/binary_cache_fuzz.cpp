// The binary cache of parsed text files. A cache file names its source and ends in a checksum of
// its payload, so random bytes would never get past the first comparison: the input here is the
// payload only (matrix count, then each matrix's sizes and arrays), framed by a valid header and
// checksum. Whatever load_cached accepts must be a well-formed CSR matrix: its callers index
// with it unchecked.
#include <cstdlib>

#include "fuzz_input.hpp"
#include "test_util/cache_payload.hpp"

namespace {

bool well_formed(const haste::CsrMatrix& m) {
  if (m.rows < 0 || m.cols < 0 || m.indptr.size() != static_cast<size_t>(m.rows) + 1) return false;
  if (m.indptr.front() != 0 || m.indptr.back() != m.nnz()) return false;
  if (!m.values.empty() && m.values.size() != m.indices.size()) return false;
  for (int64_t r = 0; r < m.rows; ++r) {
    if (m.indptr[r] > m.indptr[r + 1]) return false;
  }
  for (int64_t r = 0; r < m.rows; ++r) {
    const auto row = m.row_indices(r);
    for (size_t i = 0; i < row.size(); ++i) {
      if (row[i] < 0 || row[i] >= m.cols || (i > 0 && row[i] <= row[i - 1])) return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto source = haste::fuzz::write_file("source.txt", "1 1\n0:1\n");
  static const haste::ReadOptions options{.cache_dir = haste::fuzz::scratch_dir() / "cache"};
  static const haste::test_util::CachePayloadWriter writer(source, "fuzz", options);
  writer.write(haste::fuzz::as_text(data, size));
  if (auto matrices = haste::load_cached(source, "fuzz", options)) {
    for (const haste::CsrMatrix& matrix : *matrices) {
      if (!well_formed(matrix)) std::abort();
    }
  }
  return 0;
}
