#include "data/binary_cache.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <haste/error.hpp>

#include "data/text_io.hpp"

// Exposes XXH3_state_t so the streaming hash state can live on the stack.
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

namespace haste {
namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'H', 'A', 'S', 'T', 'E', 'X', 'C', '\0'};
// Bump whenever the layout or the parsers' output changes, so old caches become misses.
constexpr uint32_t kFormatVersion = 1;
// Written as a native uint32: reads back differently on a machine of the other byte order.
constexpr uint32_t kByteOrderMark = 0x01020304;

// What identifies the bytes of a source file without reading them.
struct SourceIdentity {
  std::string path;  // absolute, normalised
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  uint64_t inode = 0;
  bool operator==(const SourceIdentity&) const = default;
};

std::optional<SourceIdentity> identify(const fs::path& source) {
  struct stat info {};
  if (::stat(source.c_str(), &info) != 0 || !S_ISREG(info.st_mode)) return std::nullopt;
  std::error_code ec;
  fs::path absolute = fs::weakly_canonical(fs::absolute(source, ec), ec);
  if (ec) return std::nullopt;
  SourceIdentity identity;
  identity.path = absolute.string();
  identity.size = static_cast<uint64_t>(info.st_size);
  identity.mtime_ns =
      static_cast<int64_t>(info.st_mtim.tv_sec) * 1'000'000'000 + info.st_mtim.tv_nsec;
  identity.inode = static_cast<uint64_t>(info.st_ino);
  return identity;
}

template <typename T>
void append_raw(std::string& out, const T& value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof value);
}

uint64_t hash_of(std::string_view bytes) { return XXH3_64bits(bytes.data(), bytes.size()); }

uint64_t cache_key(const SourceIdentity& identity, std::string_view kind) {
  std::string bytes = identity.path;
  bytes += '\0';
  bytes += kind;
  bytes += '\0';
  append_raw(bytes, identity.size);
  append_raw(bytes, identity.mtime_ns);
  append_raw(bytes, identity.inode);
  append_raw(bytes, kFormatVersion);
  return hash_of(bytes);
}

fs::path cache_dir(const ReadOptions& options) {
  return options.cache_dir.empty() ? default_cache_dir() : options.cache_dir;
}

fs::path cache_path(const fs::path& dir, const SourceIdentity& identity, std::string_view kind) {
  std::string name = identity.path;
  name += '\0';
  name += kind;
  return dir / fmt::format("{:016x}.bin", hash_of(name));
}

// Everything before the matrices: enough to tell a fresh entry from a stale or foreign one.
std::string header_bytes(const SourceIdentity& identity, std::string_view kind) {
  std::string out(kMagic, sizeof kMagic);
  append_raw(out, kFormatVersion);
  append_raw(out, kByteOrderMark);
  append_raw(out, cache_key(identity, kind));
  append_raw(out, identity.size);
  append_raw(out, identity.mtime_ns);
  append_raw(out, identity.inode);
  append_raw(out, static_cast<uint32_t>(identity.path.size()));
  append_raw(out, static_cast<uint32_t>(kind.size()));
  out += identity.path;
  out += kind;
  return out;
}

// Sizes written before each matrix's arrays.
struct MatrixShape {
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t nnz = 0;
  int64_t value_count = 0;  // nnz, or 0 for a pattern-only matrix
};

// Reads a cache file front to back with plain read(2) calls straight into their destination,
// hashing the payload as it goes.
class CacheFileReader {
 public:
  explicit CacheFileReader(const fs::path& file) : fd_(::open(file.c_str(), O_RDONLY | O_CLOEXEC)) {
    struct stat info {};
    if (fd_ >= 0 && ::fstat(fd_, &info) == 0) remaining_ = info.st_size;
    XXH3_64bits_reset(&payload_hash_);
  }
  ~CacheFileReader() {
    if (fd_ >= 0) ::close(fd_);
  }
  CacheFileReader(const CacheFileReader&) = delete;
  CacheFileReader& operator=(const CacheFileReader&) = delete;

  bool is_open() const { return fd_ >= 0; }
  int64_t remaining() const { return remaining_; }

  // Reads `size` bytes; `payload` ones are added to the checksum.
  bool read(void* destination, size_t size, bool payload) {
    if (static_cast<int64_t>(size) > remaining_) return false;
    char* out = static_cast<char*>(destination);
    size_t done = 0;
    while (done < size) {
      ssize_t n = ::read(fd_, out + done, size - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    remaining_ -= static_cast<int64_t>(size);
    if (payload) XXH3_64bits_update(&payload_hash_, destination, size);
    return true;
  }

  template <typename T>
  bool read_array(std::vector<T>& out, int64_t count) {
    if (count < 0 || count > remaining_ / static_cast<int64_t>(sizeof(T))) return false;
    out.resize(static_cast<size_t>(count));
    return read(out.data(), out.size() * sizeof(T), true);
  }

  uint64_t payload_hash() const { return XXH3_64bits_digest(&payload_hash_); }

 private:
  int fd_ = -1;
  int64_t remaining_ = 0;
  XXH3_state_t payload_hash_{};
};

// The matrix's structure is checked as the text readers guarantee it (offsets ascending, ids in
// range and strictly increasing within a row), since every caller indexes with it unchecked: the
// checksum only catches accidents.
bool read_matrix(CacheFileReader& in, CsrMatrix& matrix) {
  MatrixShape shape;
  if (!in.read(&shape, sizeof shape, true)) return false;
  if (shape.rows < 0 || shape.rows == std::numeric_limits<int64_t>::max() || shape.cols < 0 ||
      shape.cols > std::numeric_limits<int32_t>::max() || shape.nnz < 0) {
    return false;
  }
  if (shape.value_count != 0 && shape.value_count != shape.nnz) return false;
  matrix.rows = shape.rows;
  matrix.cols = shape.cols;
  if (!in.read_array(matrix.indptr, shape.rows + 1) || !in.read_array(matrix.indices, shape.nnz) ||
      !in.read_array(matrix.values, shape.value_count)) {
    return false;
  }
  if (matrix.indptr.front() != 0 || matrix.indptr.back() != shape.nnz ||
      !std::is_sorted(matrix.indptr.begin(), matrix.indptr.end())) {
    return false;
  }
  for (int64_t row = 0; row < shape.rows; ++row) {
    int64_t previous = -1;
    for (int32_t id : matrix.row_indices(row)) {
      if (id <= previous || id >= shape.cols) return false;
      previous = id;
    }
  }
  return true;
}

template <typename T>
std::string_view bytes_of(const std::vector<T>& values) {
  return {reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T)};
}

}  // namespace

fs::path default_cache_dir() {
  if (const char* dir = std::getenv("HASTE_CACHE_DIR"); dir && *dir) return dir;
  if (const char* dir = std::getenv("XDG_CACHE_HOME"); dir && *dir) return fs::path(dir) / "haste";
  if (const char* home = std::getenv("HOME"); home && *home) {
    return fs::path(home) / ".cache" / "haste";
  }
  return {};
}

fs::path cache_file_for(const fs::path& source, std::string_view kind, const ReadOptions& options) {
  std::optional<SourceIdentity> identity = identify(source);
  fs::path dir = cache_dir(options);
  if (!identity || dir.empty()) return {};
  return cache_path(dir, *identity, kind);
}

std::optional<std::vector<CsrMatrix>> load_cached(const fs::path& source, std::string_view kind,
                                                  const ReadOptions& options) {
  std::optional<SourceIdentity> identity = identify(source);
  fs::path dir = cache_dir(options);
  if (!identity || dir.empty()) return std::nullopt;
  CacheFileReader in(cache_path(dir, *identity, kind));
  if (!in.is_open()) return std::nullopt;

  std::string expected = header_bytes(*identity, kind);
  std::string header(expected.size(), '\0');
  if (!in.read(header.data(), header.size(), false) || header != expected) return std::nullopt;

  uint64_t count = 0;
  if (!in.read(&count, sizeof count, true) || count > 16) return std::nullopt;
  std::vector<CsrMatrix> matrices(count);
  for (CsrMatrix& matrix : matrices) {
    if (!read_matrix(in, matrix)) return std::nullopt;
  }
  uint64_t computed = in.payload_hash();
  uint64_t stored = 0;
  if (!in.read(&stored, sizeof stored, false) || stored != computed || in.remaining() != 0) {
    return std::nullopt;
  }
  return matrices;
}

void store_cached(const fs::path& source, std::string_view kind, const ReadOptions& options,
                  const std::vector<CsrMatrix>& matrices) {
  std::optional<SourceIdentity> identity = identify(source);
  fs::path dir = cache_dir(options);
  if (!identity || dir.empty()) return;
  try {
    AtomicOutput out(cache_path(dir, *identity, kind));
    out.write(header_bytes(*identity, kind));
    XXH3_state_t hash;
    XXH3_64bits_reset(&hash);
    auto write_payload = [&](std::string_view bytes) {
      XXH3_64bits_update(&hash, bytes.data(), bytes.size());
      out.write(bytes);
    };
    uint64_t count = matrices.size();
    write_payload({reinterpret_cast<const char*>(&count), sizeof count});
    for (const CsrMatrix& matrix : matrices) {
      MatrixShape shape{matrix.rows, matrix.cols, matrix.nnz(),
                        static_cast<int64_t>(matrix.values.size())};
      write_payload({reinterpret_cast<const char*>(&shape), sizeof shape});
      write_payload(bytes_of(matrix.indptr));
      write_payload(bytes_of(matrix.indices));
      write_payload(bytes_of(matrix.values));
    }
    uint64_t checksum = XXH3_64bits_digest(&hash);
    out.write({reinterpret_cast<const char*>(&checksum), sizeof checksum});
    out.commit();
  } catch (const std::exception&) {
    // A cache that cannot be written (read-only or full disk) only costs speed next time.
  }
}

std::vector<CsrMatrix> load_or_parse(const fs::path& source, std::string_view kind,
                                     const ReadOptions& options,
                                     const std::function<std::vector<CsrMatrix>()>& parse) {
  if (!options.use_cache) return parse();
  if (std::optional<std::vector<CsrMatrix>> cached = load_cached(source, kind, options)) {
    return std::move(*cached);
  }
  std::optional<SourceIdentity> before = identify(source);
  std::vector<CsrMatrix> parsed = parse();
  // A file that changed while it was parsed may have been read half old, half new.
  if (before && identify(source) == before) store_cached(source, kind, options, parsed);
  return parsed;
}

}  // namespace haste
