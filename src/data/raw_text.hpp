// Reader for raw text data sets in JSON lines: one object per line with a "text" string and an
// optional "labels" array of label ids (non-negative integers) or label names (strings); other
// fields (e.g. "uid") are ignored. Blank lines are skipped. Compressed files read as they come.
// Any problem is a haste::Error naming the file and line.
#pragma once

#include "data/text_io.hpp"

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace haste {

enum class LabelKind { none, ids, names };

const char* label_kind_name(LabelKind kind);  // "none", "integer ids", "strings"

struct RawTextRow {
  std::string text;
  LabelKind label_kind = LabelKind::none;  // none: no "labels" field, or an empty array
  std::vector<int64_t> label_ids;          // when label_kind == ids
  std::vector<std::string> label_names;    // when label_kind == names
  int64_t line = 0;                        // 1-based line of the row in its file
};

class RawTextReader {
 public:
  explicit RawTextReader(const std::filesystem::path& file);

  // Next row; false at the end of the file.
  bool next(RawTextRow& row);

  const std::filesystem::path& path() const { return lines_.path(); }
  double fraction_read() const { return lines_.fraction_read(); }

 private:
  LineReader lines_;
};

}  // namespace haste
