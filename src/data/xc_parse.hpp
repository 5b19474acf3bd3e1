// Parsing of Extreme Classification Repository text, shared by the single-file, split-file and
// matrix readers: the header line, label lists ("3,17,42"), index:value pairs ("5:0.25 9:1"),
// and the row loop that checks the row count against the header.
//
// Every problem is a haste::Error "file:line: problem", naming the offending token, so a user
// can find it in a file of millions of lines.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <haste/dataset.hpp>
#include <haste/sparse.hpp>
#include <string_view>
#include <utility>
#include <vector>

#include "data/text_io.hpp"

namespace haste {

// Where a token was found, for error messages.
struct TextPlace {
  const std::filesystem::path* file;
  int64_t line;
};

// Reads the first line of `reader` and parses it as `Count` non-negative integers, e.g. "N F L";
// `layout` ("N F L") and `meaning` ("rows, features, labels") describe it in errors.
template <size_t Count>
std::array<int64_t, Count> read_header(LineReader& reader, const char* layout, const char* meaning);

// "l1,l2,...": appends the label ids to `out`, sorted, each in [0, num_labels).
void parse_label_list(std::string_view text, int64_t num_labels, const TextPlace& place,
                      std::vector<int32_t>& out);

// How the pairs of a line are read.
struct PairRules {
  const char* what;     // "feature", "label", "column": names ids in errors
  int64_t num_ids;      // ids must be in [0, num_ids)
  bool keep_values;     // false: values are checked, then dropped (label files)
  bool value_optional;  // true: a bare "id" is accepted (label files written without ":1")
};

// "i:v i:v ...": appends ids (and values, if kept) to `indices`/`values`, sorted by id.
// Whitespace is spaces and tabs; anything else that is not a well-formed pair is an error.
void parse_pairs(std::string_view text, const PairRules& rules, const TextPlace& place,
                 std::vector<int32_t>& indices, std::vector<float>& values);

// Calls `parse_row(line, place)` once per row of the body, for exactly `rows` rows, showing
// progress, then checks that only blank lines follow. A last line without a newline that fails
// to parse, or a body with fewer rows than the header, is reported as a likely truncation.
template <typename ParseRow>
void for_each_row(LineReader& reader, int64_t rows, const ReadOptions& options,
                  ParseRow&& parse_row);

// ---- implementation of the templates ----

namespace detail {
[[noreturn]] void fail_header(const TextPlace& place, std::string_view line, const char* layout,
                              const char* meaning);
[[noreturn]] void fail_empty_file(const std::filesystem::path& file, const char* layout);
bool parse_count(std::string_view& text, int64_t& value);
bool is_blank(std::string_view line);

// Runs the row loop; `parse_row` is called through a plain function pointer plus context so
// the loop itself lives in the .cpp file.
using RowCallback = void (*)(void* context, std::string_view line, const TextPlace& place);
void for_each_row(LineReader& reader, int64_t rows, const ReadOptions& options, void* context,
                  RowCallback callback);
}  // namespace detail

template <size_t Count>
std::array<int64_t, Count> read_header(LineReader& reader, const char* layout,
                                       const char* meaning) {
  std::string_view line;
  if (!reader.next(line)) detail::fail_empty_file(reader.path(), layout);
  TextPlace place{&reader.path(), reader.line_number()};
  std::array<int64_t, Count> counts{};
  std::string_view rest = line;
  for (int64_t& count : counts) {
    if (!detail::parse_count(rest, count)) detail::fail_header(place, line, layout, meaning);
  }
  if (!detail::is_blank(rest)) detail::fail_header(place, line, layout, meaning);
  return counts;
}

template <typename ParseRow>
void for_each_row(LineReader& reader, int64_t rows, const ReadOptions& options,
                  ParseRow&& parse_row) {
  auto callback = [](void* context, std::string_view line, const TextPlace& place) {
    (*static_cast<std::remove_reference_t<ParseRow>*>(context))(line, place);
  };
  detail::for_each_row(reader, rows, options, &parse_row, callback);
}

}  // namespace haste
