// Binary cache of parsed text files: the second load of a dataset reads its matrices back in one
// pass instead of decompressing and parsing text again.
//
// One cache file per (source file, parse kind), named by a hash of the absolute path and the
// kind, so a changed source overwrites its stale entry instead of piling up new ones. Inside:
//   magic "HASTEXC\0", format version, endianness marker,
//   key = xxh3-64(absolute path, size, mtime in ns, inode, kind, format version),
//   the source's identity (path, size, mtime, inode) and the parse kind, spelled out,
//   the matrices (rows, cols, nnz, value count, then indptr, indices, values as raw arrays),
//   xxh3-64 of that matrix payload.
// Anything that does not match (missing, stale, corrupt, other version) is a miss: the caller
// parses the text and the cache is rewritten. Failing to write the cache (read-only directory,
// full disk) never fails the read.
#pragma once

#include <filesystem>
#include <functional>
#include <haste/dataset.hpp>
#include <haste/sparse.hpp>
#include <optional>
#include <string_view>
#include <vector>

namespace haste {

// $HASTE_CACHE_DIR, else $XDG_CACHE_HOME/haste, else $HOME/.cache/haste; empty if none is set.
std::filesystem::path default_cache_dir();

// Where the cache of `source` parsed as `kind` lives (for tests and `data stats`); empty when
// the source cannot be cached (not a regular file, no cache directory).
std::filesystem::path cache_file_for(const std::filesystem::path& source, std::string_view kind,
                                     const ReadOptions& options);

// The matrices cached for `source` parsed as `kind`, or nothing on any kind of miss.
std::optional<std::vector<CsrMatrix>> load_cached(const std::filesystem::path& source,
                                                  std::string_view kind,
                                                  const ReadOptions& options);

// Writes the cache for `source`; silently does nothing when it cannot.
void store_cached(const std::filesystem::path& source, std::string_view kind,
                  const ReadOptions& options, const std::vector<CsrMatrix>& matrices);

// The cached matrices when `options.use_cache` and the cache is fresh; otherwise `parse()`,
// whose result is then cached. `kind` names the parse (e.g. "xc", "xc-labels"), since one file
// read two ways gives different matrices.
std::vector<CsrMatrix> load_or_parse(const std::filesystem::path& source, std::string_view kind,
                                     const ReadOptions& options,
                                     const std::function<std::vector<CsrMatrix>()>& parse);

}  // namespace haste
