#include "data/xc_parse.hpp"

#include <fast_float/fast_float.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <haste/error.hpp>
#include <haste/progress.hpp>
#include <string>

namespace haste {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t'; }

// A token as it appears in an error message: quoted, and cut short if it is huge (a line of
// binary garbage should not flood the terminal).
std::string quoted(std::string_view token) {
  constexpr size_t kMaxShown = 40;
  if (token.size() > kMaxShown) return fmt::format("'{}...'", token.substr(0, kMaxShown));
  return fmt::format("'{}'", token);
}

// The whitespace-delimited token starting at `p`, for error messages.
std::string_view token_at(const char* p, const char* end) {
  const char* q = p;
  while (q < end && !is_space(*q)) ++q;
  return {p, static_cast<size_t>(q - p)};
}

// Checks an id read from the text against [0, num_ids).
void check_id(int64_t id, int64_t num_ids, const char* what, std::string_view token,
              const TextPlace& place) {
  if (id < 0) fail_at(*place.file, place.line, "negative {} id in {}", what, quoted(token));
  if (id >= num_ids) {
    fail_at(*place.file, place.line,
            "{} id {} is out of range: the header declares {} {}s (ids 0..{})", what, id, num_ids,
            what, num_ids - 1);
  }
}

// Parses a whole id token; false unless `token` is exactly one integer.
bool parse_id(std::string_view token, int64_t& id, bool& too_large) {
  const char* end = token.data() + token.size();
  auto [ptr, ec] = std::from_chars(token.data(), end, id);
  too_large = ec == std::errc::result_out_of_range;
  return ec == std::errc{} && ptr == end;
}

[[noreturn]] void fail_duplicate(const char* what, int64_t id, const TextPlace& place) {
  fail_at(*place.file, place.line, "{} {} appears twice in the row", what, id);
}

// Sorts ids [first, end) of `indices` (and their values, when kept) and rejects repeats.
void sort_row(std::vector<int32_t>& indices, std::vector<float>& values, size_t first,
              bool keep_values, const char* what, const TextPlace& place) {
  auto begin = indices.begin() + static_cast<std::ptrdiff_t>(first);
  if (!keep_values) {
    std::sort(begin, indices.end());
  } else {
    std::vector<std::pair<int32_t, float>> pairs;
    pairs.reserve(indices.size() - first);
    for (size_t i = first; i < indices.size(); ++i) pairs.emplace_back(indices[i], values[i]);
    std::sort(pairs.begin(), pairs.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    for (size_t i = 0; i < pairs.size(); ++i) {
      indices[first + i] = pairs[i].first;
      values[first + i] = pairs[i].second;
    }
  }
  auto repeat = std::adjacent_find(begin, indices.end());
  if (repeat != indices.end()) fail_duplicate(what, *repeat, place);
}

}  // namespace

namespace detail {

void fail_empty_file(const std::filesystem::path& file, const char* layout) {
  fail("{}: empty file: expected a header line '{}'", file.string(), layout);
}

void fail_header(const TextPlace& place, std::string_view line, const char* layout,
                 const char* meaning) {
  bool looks_like_data =
      line.find(':') != std::string_view::npos || line.find(',') != std::string_view::npos;
  // A header of the other format's length usually means the wrong reader for the file.
  size_t expected = static_cast<size_t>(std::count(layout, layout + std::strlen(layout), ' ')) + 1;
  size_t numbers = 0;
  std::string_view rest = line;
  for (int64_t count = 0; parse_count(rest, count);) ++numbers;
  const char* hint = "";
  if (looks_like_data) {
    hint = "; is the header line missing?";
  } else if (is_blank(rest) && expected == 3 && numbers == 2) {
    hint =
        "; 'N F' / 'N L' is the header of a split-format file: give its features and labels "
        "files together";
  } else if (is_blank(rest) && expected == 2 && numbers == 3) {
    hint = "; 'N F L' is the header of a single-file dataset: give that file alone";
  }
  fail_at(*place.file, place.line, "malformed header {}: expected '{}' ({}){}", quoted(line),
          layout, meaning, hint);
}

bool parse_count(std::string_view& text, int64_t& value) {
  const char* p = text.data();
  const char* end = p + text.size();
  while (p < end && is_space(*p)) ++p;
  auto [ptr, ec] = std::from_chars(p, end, value);
  if (ec != std::errc{} || value < 0 || (ptr < end && !is_space(*ptr))) return false;
  text = std::string_view(ptr, static_cast<size_t>(end - ptr));
  return true;
}

bool is_blank(std::string_view line) {
  return std::all_of(line.begin(), line.end(), [](char c) { return is_space(c) || c == '\r'; });
}

void for_each_row(LineReader& reader, int64_t rows, const ReadOptions& options, void* context,
                  RowCallback callback) {
  Progress progress(fmt::format("reading {}", reader.path().filename().string()),
                    options.show_progress);
  constexpr int64_t kRowsPerUpdate = 8192;
  std::string_view line;
  for (int64_t row = 0; row < rows; ++row) {
    if (!reader.next(line)) {
      fail_at(reader.path(), reader.line_number(),
              "the file ends after {} rows, but its header declares {} (truncated?)", row, rows);
    }
    // LineReader drops "\r\n"; a lone "\r" can still end an unterminated last line.
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    TextPlace place{&reader.path(), reader.line_number()};
    if (reader.line_was_terminated()) {
      callback(context, line, place);
    } else {
      try {
        callback(context, line, place);
      } catch (const Error& e) {
        throw Error(
            fmt::format("{} (the last line has no newline: is the file truncated?)", e.what()));
      }
    }
    if (row % kRowsPerUpdate == 0) progress.update(reader.fraction_read(), row, "rows");
  }
  // A blank line (or several) after the last row is common and harmless; data is not.
  while (reader.next(line)) {
    if (!is_blank(line)) {
      fail_at(reader.path(), reader.line_number(),
              "more rows than the {} its header declares (wrong header?)", rows);
    }
  }
  progress.finish();
}

}  // namespace detail

void parse_label_list(std::string_view text, int64_t num_labels, const TextPlace& place,
                      std::vector<int32_t>& out) {
  size_t first = out.size();
  bool sorted = true;
  int64_t previous = -1;
  size_t start = 0;
  while (true) {
    size_t comma = text.find(',', start);
    std::string_view token = text.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    int64_t id = 0;
    bool too_large = false;
    if (!parse_id(token, id, too_large)) {
      if (too_large) fail_at(*place.file, place.line, "label id {} is too large", quoted(token));
      if (token.empty()) {
        fail_at(*place.file, place.line, "empty label id in the label list {}", quoted(text));
      }
      bool pair = token.find(':') != std::string_view::npos;
      fail_at(*place.file, place.line, "malformed label id {} in the label list {}{}",
              quoted(token), quoted(text),
              pair ? "; a row without labels must start with a space" : "");
    }
    check_id(id, num_labels, "label", token, place);
    sorted = sorted && id > previous;
    previous = id;
    out.push_back(static_cast<int32_t>(id));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  if (!sorted) {
    std::vector<float> no_values;
    sort_row(out, no_values, first, false, "label", place);
  }
}

void parse_pairs(std::string_view text, const PairRules& rules, const TextPlace& place,
                 std::vector<int32_t>& indices, std::vector<float>& values) {
  const char* p = text.data();
  const char* end = p + text.size();
  size_t first = indices.size();
  bool sorted = true;
  int64_t previous = -1;
  auto malformed = [&](const char* token_start, const char* expected) {
    fail_at(*place.file, place.line, "malformed {} {}: expected {}", rules.what,
            quoted(token_at(token_start, end)), expected);
  };
  while (true) {
    while (p < end && is_space(*p)) ++p;
    if (p == end) break;
    const char* token = p;
    int64_t id = 0;
    auto [after_id, id_error] = std::from_chars(p, end, id);
    if (id_error == std::errc::result_out_of_range) {
      fail_at(*place.file, place.line, "{} id in {} is too large", rules.what,
              quoted(token_at(token, end)));
    }
    if (id_error != std::errc{}) malformed(token, "id:value with an integer id");
    float value = 1.0f;
    if (after_id < end && *after_id == ':') {
      auto [after_value, value_error] = fast_float::from_chars(after_id + 1, end, value);
      if (value_error == std::errc::result_out_of_range) {
        fail_at(*place.file, place.line, "{} {} has the value {}, out of the float32 range",
                rules.what, id, quoted(token_at(after_id + 1, end)));
      }
      if (value_error != std::errc{}) malformed(token, "id:value with a number after ':'");
      if (after_value < end && !is_space(*after_value)) {
        malformed(token, "id:value followed by a space or the end of the line");
      }
      if (!std::isfinite(value)) {
        fail_at(*place.file, place.line, "{} {} has the value {}: values must be finite",
                rules.what, id, quoted(std::string_view(after_id + 1, after_value)));
      }
      p = after_value;
    } else if (rules.value_optional && (after_id == end || is_space(*after_id))) {
      p = after_id;
    } else {
      malformed(token, "id:value");
    }
    check_id(id, rules.num_ids, rules.what, token_at(token, end), place);
    sorted = sorted && id > previous;
    previous = id;
    indices.push_back(static_cast<int32_t>(id));
    if (rules.keep_values) values.push_back(value);
  }
  if (!sorted) sort_row(indices, values, first, rules.keep_values, rules.what, place);
}

}  // namespace haste
