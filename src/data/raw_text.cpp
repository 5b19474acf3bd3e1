#include "data/raw_text.hpp"

#include <haste/error.hpp>
#include <limits>
#include <nlohmann/json.hpp>

namespace haste {
namespace {

using Json = nlohmann::json;

bool is_blank(std::string_view line) {
  return line.find_first_not_of(" \t\r") == std::string_view::npos;
}

// nlohmann's messages start with "[json.exception.parse_error.101] parse error at line 1, ...";
// the file:line prefix already says where, so keep only the part after the last ": ".
std::string short_json_message(const char* what) {
  std::string_view message = what;
  size_t colon = message.rfind(": ");
  return std::string(colon == std::string_view::npos ? message : message.substr(colon + 2));
}

void read_labels(const Json& labels, const RawTextReader& reader, RawTextRow& row) {
  if (!labels.is_array()) {
    fail_at(reader.path(), row.line, "\"labels\" must be an array of label ids or names, not {}",
            labels.type_name());
  }
  for (const Json& label : labels) {
    LabelKind kind = label.is_string() ? LabelKind::names : LabelKind::ids;
    if (kind == LabelKind::ids && !label.is_number_integer()) {
      fail_at(reader.path(), row.line, "label {} is not an integer id or a string name",
              label.dump());
    }
    if (row.label_kind != LabelKind::none && row.label_kind != kind) {
      fail_at(reader.path(), row.line,
              "\"labels\" mixes integer ids and string names; use one kind throughout");
    }
    row.label_kind = kind;
    if (kind == LabelKind::names) {
      row.label_names.push_back(label.get<std::string>());
      continue;
    }
    constexpr int64_t kMaxId = std::numeric_limits<int32_t>::max();
    bool in_range = label.is_number_unsigned()
                        ? label.get<uint64_t>() <= static_cast<uint64_t>(kMaxId)
                        : label.get<int64_t>() >= 0 && label.get<int64_t>() <= kMaxId;
    if (!in_range) {
      fail_at(reader.path(), row.line, "label id {} is out of range [0, {}]", label.dump(), kMaxId);
    }
    row.label_ids.push_back(label.get<int64_t>());
  }
}

}  // namespace

const char* label_kind_name(LabelKind kind) {
  switch (kind) {
    case LabelKind::none:
      return "none";
    case LabelKind::ids:
      return "integer ids";
    case LabelKind::names:
      return "strings";
  }
  return "?";
}

RawTextReader::RawTextReader(const std::filesystem::path& file) : lines_(file) {}

bool RawTextReader::next(RawTextRow& row) {
  std::string_view line;
  do {
    if (!lines_.next(line)) return false;
  } while (is_blank(line));

  row.line = lines_.line_number();
  row.label_kind = LabelKind::none;
  row.label_ids.clear();
  row.label_names.clear();

  Json object;
  try {
    object = Json::parse(line);
  } catch (const Json::parse_error& e) {
    const char* hint =
        lines_.line_was_terminated() ? "" : " (the file ends in the middle of a line)";
    fail_at(path(), row.line, "not valid JSON at column {}: {}{}", e.byte,
            short_json_message(e.what()), hint);
  } catch (const Json::out_of_range& e) {  // a number beyond double's range: 1e999
    fail_at(path(), row.line, "not valid JSON: {}", short_json_message(e.what()));
  }
  if (!object.is_object()) {
    fail_at(path(), row.line, "expected a JSON object {{\"text\": ..., \"labels\": [...]}}, got {}",
            object.type_name());
  }
  auto text = object.find("text");
  if (text == object.end()) fail_at(path(), row.line, "no \"text\" field");
  if (!text->is_string()) {
    fail_at(path(), row.line, "\"text\" must be a string, not {}", text->type_name());
  }
  row.text = std::move(text->get_ref<std::string&>());
  if (auto labels = object.find("labels"); labels != object.end() && !labels->is_null()) {
    read_labels(*labels, *this, row);
  }
  return true;
}

}  // namespace haste
