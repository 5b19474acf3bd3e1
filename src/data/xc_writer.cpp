// Writers for the Extreme Classification Repository formats. Values are printed in the
// shortest form that reads back to the same float32, so write -> read is exact. Output goes
// through AtomicOutput: compressed by extension, never left half-written.
#include <fmt/format.h>

#include <haste/dataset.hpp>
#include <haste/error.hpp>
#include <iterator>
#include <string>
#include <vector>

#include "data/text_io.hpp"
#include "data/xc_format.hpp"

namespace haste {
namespace fs = std::filesystem;

namespace {

constexpr size_t kFlushBytes = 1 << 20;

// Text is built in a buffer and handed to the output in ~1 MB pieces.
class BufferedText {
 public:
  explicit BufferedText(const fs::path& file) : output_(file) {}
  std::string& text() { return text_; }
  void maybe_flush() {
    if (text_.size() >= kFlushBytes) flush();
  }
  void commit() {
    flush();
    output_.commit();
  }

 private:
  void flush() {
    output_.write(text_);
    text_.clear();
  }
  AtomicOutput output_;
  std::string text_;
};

// One row's features as sparse (index, value) spans, from sparse or dense features alike.
class FeatureRows {
 public:
  explicit FeatureRows(const Dataset& data) : data_(data) {}

  void get(int64_t row, std::span<const int32_t>& indices, std::span<const float>& values) {
    if (data_.dense.cols == 0) {
      indices = data_.features.row_indices(row);
      values = data_.features.row_values(row);
      return;
    }
    // Dense rows are written sparsely: zeros are implied by the format.
    indices_.clear();
    values_.clear();
    std::span<const float> dense = data_.dense.row(row);
    for (size_t col = 0; col < dense.size(); ++col) {
      if (dense[col] == 0.0f) continue;
      indices_.push_back(static_cast<int32_t>(col));
      values_.push_back(dense[col]);
    }
    indices = indices_;
    values = values_;
  }

 private:
  const Dataset& data_;
  std::vector<int32_t> indices_;
  std::vector<float> values_;
};

// "i:v i:v\n"; a pattern-only row (no values) is written with value 1.
void append_pairs_line(std::string& out, std::span<const int32_t> indices,
                       std::span<const float> values) {
  for (size_t i = 0; i < indices.size(); ++i) {
    if (i > 0) out += ' ';
    out += fmt::format_int(indices[i]).c_str();
    out += ':';
    if (values.empty()) {
      out += '1';
    } else {
      fmt::format_to(std::back_inserter(out), "{}", values[i]);
    }
  }
  out += '\n';
}

int64_t feature_rows(const Dataset& data) {
  return data.dense.cols > 0 ? data.dense.rows : data.features.rows;
}

void check_consistent(const Dataset& data) {
  check(feature_rows(data) == data.labels.rows,
        "cannot write a dataset with {} feature rows and {} label rows", feature_rows(data),
        data.labels.rows);
}

// `with_values` false writes every value as 1 (label files).
void write_matrix_rows(BufferedText& out, const CsrMatrix& matrix, bool with_values) {
  const bool has_values = with_values && !matrix.values.empty();
  for (int64_t row = 0; row < matrix.rows; ++row) {
    append_pairs_line(out.text(), matrix.row_indices(row),
                      has_values ? matrix.row_values(row) : std::span<const float>{});
    out.maybe_flush();
  }
}

}  // namespace

void write_xc(const Dataset& data, const fs::path& file) {
  check_consistent(data);
  BufferedText out(file);
  append_xc_header(out.text(), data.num_points(), data.num_features(), data.num_labels());
  FeatureRows features(data);
  std::span<const int32_t> indices;
  std::span<const float> values;
  for (int64_t row = 0; row < data.num_points(); ++row) {
    features.get(row, indices, values);
    append_xc_row(out.text(), data.labels.row_indices(row), indices, values);
    out.maybe_flush();
  }
  out.commit();
}

void write_xc_split(const Dataset& data, const fs::path& features_file,
                    const fs::path& labels_file) {
  check_consistent(data);
  BufferedText features_out(features_file);
  fmt::format_to(std::back_inserter(features_out.text()), "{} {}\n", data.num_points(),
                 data.num_features());
  FeatureRows features(data);
  std::span<const int32_t> indices;
  std::span<const float> values;
  for (int64_t row = 0; row < data.num_points(); ++row) {
    features.get(row, indices, values);
    append_pairs_line(features_out.text(), indices, values);
    features_out.maybe_flush();
  }
  // Labels are written as "l:1", the Extreme Classification Repository's label-file style.
  BufferedText labels_out(labels_file);
  fmt::format_to(std::back_inserter(labels_out.text()), "{} {}\n", data.labels.rows,
                 data.labels.cols);
  write_matrix_rows(labels_out, data.labels, false);
  features_out.commit();
  labels_out.commit();
}

void write_xc_matrix(const CsrMatrix& matrix, const fs::path& file) {
  BufferedText out(file);
  fmt::format_to(std::back_inserter(out.text()), "{} {}\n", matrix.rows, matrix.cols);
  write_matrix_rows(out, matrix, true);
  out.commit();
}

}  // namespace haste
