// Readers for the Extreme Classification Repository formats. Each parses its text once into
// CSR matrices (through the binary cache when it is on) and checks everything the header
// promises; see xc_parse.hpp for the token-level rules.
#include <algorithm>
#include <cstdint>
#include <haste/dataset.hpp>
#include <haste/error.hpp>
#include <limits>

#include "data/binary_cache.hpp"
#include "data/npy_reader.hpp"
#include "data/text_io.hpp"
#include "data/xc_parse.hpp"

namespace haste {
namespace fs = std::filesystem;

namespace {

// Ids are stored as int32, so a header may not declare more ids than that holds.
void check_id_space(const fs::path& file, int64_t count, const char* what) {
  constexpr int64_t kMaxIds = std::numeric_limits<int32_t>::max();
  if (count > kMaxIds) {
    fail_at(file, 1, "the header declares {} {}s; at most {} are supported", count, what, kMaxIds);
  }
}

CsrMatrix empty_matrix(int64_t rows, int64_t cols) {
  CsrMatrix matrix;
  matrix.cols = cols;
  matrix.rows = rows;
  // The header's count is not trusted for the allocation: a corrupt one must give an error
  // about the rows, not an out-of-memory failure before the first row is read.
  constexpr int64_t kMaxReservedRows = int64_t{1} << 22;
  matrix.indptr.reserve(static_cast<size_t>(std::min(rows, kMaxReservedRows)) + 1);
  return matrix;
}

void end_row(CsrMatrix& matrix) { matrix.indptr.push_back(matrix.nnz()); }

// "N F L" then "l1,l2 f:v f:v" rows -> {features, labels}.
std::vector<CsrMatrix> parse_single_file(const fs::path& file, const ReadOptions& options) {
  LineReader reader(file);
  const auto header = read_header<3>(reader, "N F L", "rows, features, labels");
  const int64_t rows = header[0], num_features = header[1], num_labels = header[2];
  check_id_space(file, num_features, "feature");
  check_id_space(file, num_labels, "label");
  CsrMatrix features = empty_matrix(rows, num_features);
  CsrMatrix labels = empty_matrix(rows, num_labels);
  const PairRules feature_rules{"feature", num_features, true, false};
  for_each_row(reader, rows, options, [&](std::string_view line, const TextPlace& place) {
    // Labels run up to the first space; a row without labels starts with one.
    size_t space = line.find_first_of(" \t");
    std::string_view label_text = line.substr(0, space);
    if (!label_text.empty()) parse_label_list(label_text, num_labels, place, labels.indices);
    if (space != std::string_view::npos) {
      parse_pairs(line.substr(space + 1), feature_rules, place, features.indices, features.values);
    }
    end_row(labels);
    end_row(features);
  });
  std::vector<CsrMatrix> result;
  result.push_back(std::move(features));
  result.push_back(std::move(labels));
  return result;
}

// How one "N C" matrix file is read: the split format's feature and label files, and lone
// matrices such as prediction files.
struct MatrixFileKind {
  const char* layout;   // the header, for errors
  const char* meaning;  // what its numbers are
  const char* id_name;  // "feature", "label", "column"
  bool keep_values;
  bool value_optional;
  const char* cache_kind;
};
// Fields: header, its numbers, id name, keep values, value optional, cache kind. Label files
// usually say "l:1"; the values carry nothing, so bare ids are accepted too.
// clang-format off
constexpr MatrixFileKind kFeatures{"N F", "rows, features", "feature", true,  false, "xc-features"};
constexpr MatrixFileKind kLabels  {"N L", "rows, labels",   "label",   false, true,  "xc-labels"};
constexpr MatrixFileKind kScores  {"N C", "rows, columns",  "column",  true,  true,  "xc-matrix"};
// clang-format on

// "N C" then "i:v i:v" rows -> one matrix.
CsrMatrix parse_matrix_file(const fs::path& file, const MatrixFileKind& kind,
                            const ReadOptions& options) {
  LineReader reader(file);
  const auto header = read_header<2>(reader, kind.layout, kind.meaning);
  const int64_t rows = header[0], cols = header[1];
  check_id_space(file, cols, kind.id_name);
  const PairRules rules{kind.id_name, cols, kind.keep_values, kind.value_optional};
  CsrMatrix matrix = empty_matrix(rows, cols);
  for_each_row(reader, rows, options, [&](std::string_view line, const TextPlace& place) {
    parse_pairs(line, rules, place, matrix.indices, matrix.values);
    end_row(matrix);
  });
  return matrix;
}

CsrMatrix read_matrix_file(const fs::path& file, const MatrixFileKind& kind,
                           const ReadOptions& options) {
  std::vector<CsrMatrix> matrices = load_or_parse(file, kind.cache_kind, options, [&] {
    std::vector<CsrMatrix> parsed;
    parsed.push_back(parse_matrix_file(file, kind, options));
    return parsed;
  });
  return std::move(matrices.at(0));
}

void check_same_rows(const fs::path& features, int64_t feature_rows, const fs::path& labels,
                     int64_t label_rows) {
  if (feature_rows != label_rows) {
    fail(
        "{} has {} rows but {} has {}: the feature and label files of a dataset must have "
        "one row per point, in the same order",
        features.string(), feature_rows, labels.string(), label_rows);
  }
}

}  // namespace

Dataset read_xc(const fs::path& file, const ReadOptions& options) {
  std::vector<CsrMatrix> matrices =
      load_or_parse(file, "xc", options, [&] { return parse_single_file(file, options); });
  Dataset data;
  data.features = std::move(matrices.at(0));
  data.labels = std::move(matrices.at(1));
  return data;
}

Dataset read_xc_split(const fs::path& features, const fs::path& labels,
                      const ReadOptions& options) {
  Dataset data;
  if (is_npy_file(features)) {
    data.dense = read_npy(features);
    data.labels = read_matrix_file(labels, kLabels, options);
    check_same_rows(features, data.dense.rows, labels, data.labels.rows);
    return data;
  }
  data.features = read_matrix_file(features, kFeatures, options);
  data.labels = read_matrix_file(labels, kLabels, options);
  check_same_rows(features, data.features.rows, labels, data.labels.rows);
  return data;
}

Dataset read_dataset(const fs::path& first, const std::optional<fs::path>& second,
                     const ReadOptions& options) {
  if (second) return read_xc_split(first, *second, options);
  check(!is_npy_file(first), "{}: a .npy file holds features only; give the labels file after it",
        first.string());
  return read_xc(first, options);
}

CsrMatrix read_xc_matrix(const fs::path& file, const ReadOptions& options) {
  return read_matrix_file(file, kScores, options);
}

}  // namespace haste
