// XMC datasets: features (sparse or dense) and labels, read from and written to the Extreme
// Classification Repository formats. Compressed inputs (.xz, .gz, .bz2) are read as they come.
#pragma once

#include <haste/sparse.hpp>

#include <filesystem>
#include <optional>
#include <string>

namespace haste {

struct Dataset {
  CsrMatrix features;  // N x F sparse features; empty when `dense` holds the inputs
  DenseMatrix dense;   // N x D dense features (from .npy), empty for sparse datasets
  CsrMatrix labels;    // N x L, pattern only

  int64_t num_points() const { return labels.rows; }
  int64_t num_features() const { return dense.cols > 0 ? dense.cols : features.cols; }
  int64_t num_labels() const { return labels.cols; }
};

struct ReadOptions {
  // A binary copy of each parsed text file is kept in `cache_dir` (default: $HASTE_CACHE_DIR,
  // else $XDG_CACHE_HOME/haste, else ~/.cache/haste) and used when the source is unchanged.
  bool use_cache = true;
  std::filesystem::path cache_dir;
  // Progress bar on stderr for reads that take long enough to need one.
  bool show_progress = true;
};

// Single-file format: header "N F L", then one line per row: "l1,l2,... f:v f:v ...".
Dataset read_xc(const std::filesystem::path& file, const ReadOptions& options = {});

// Split format: a feature file (header "N F", lines "f:v f:v ...") and a label file
// (header "N L", lines "l:v l:v ..."; values ignored). `features` may be a .npy file of
// dense features instead.
Dataset read_xc_split(const std::filesystem::path& features, const std::filesystem::path& labels,
                      const ReadOptions& options = {});

// Any of the above, by looking at the arguments: one path -> single file; two -> split.
Dataset read_dataset(const std::filesystem::path& first,
                     const std::optional<std::filesystem::path>& second = std::nullopt,
                     const ReadOptions& options = {});

// A split-format matrix file alone ("N C" header, "i:v i:v" lines), e.g. a prediction file
// whose values are scores. Values are kept.
CsrMatrix read_xc_matrix(const std::filesystem::path& file, const ReadOptions& options = {});

// Dense float matrix from a NumPy .npy file (2-D, float32 or float64, C or Fortran order).
DenseMatrix read_npy(const std::filesystem::path& file);

// Writers. The output is compressed when the path ends in .xz, .gz or .bz2. Files are written
// to a temporary name and renamed, so a failed write never leaves a half-written file.
void write_xc(const Dataset& data, const std::filesystem::path& file);
void write_xc_split(const Dataset& data, const std::filesystem::path& features,
                    const std::filesystem::path& labels);
void write_xc_matrix(const CsrMatrix& matrix, const std::filesystem::path& file);

}  // namespace haste
