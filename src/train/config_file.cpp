#include <haste/config_file.hpp>
#include <haste/error.hpp>
#include <nlohmann/json.hpp>

#define TOML_HEADER_ONLY 1  // no run-time dependency on libtomlplusplus.so
#include <toml++/toml.h>

#include <algorithm>
#include <string>

#include "data/text_io.hpp"

namespace haste {
namespace fs = std::filesystem;

namespace {

using Json = nlohmann::json;

int64_t line_of(const toml::node& node) { return static_cast<int64_t>(node.source().begin.line); }

// The TOML value as JSON; the settings structs read JSON.
Json to_json(const toml::node& node, const fs::path& source) {
  if (const auto* table = node.as_table()) {
    Json out = Json::object();
    for (const auto& [key, value] : *table) out[std::string(key.str())] = to_json(value, source);
    return out;
  }
  if (const auto* array = node.as_array()) {
    Json out = Json::array();
    for (const auto& value : *array) out.push_back(to_json(value, source));
    return out;
  }
  if (const auto* text = node.as_string()) return text->get();
  if (const auto* integer = node.as_integer()) return integer->get();
  if (const auto* real = node.as_floating_point()) return real->get();
  if (const auto* boolean = node.as_boolean()) return boolean->get();
  fail_at(source, line_of(node), "dates and times are not settings HASTE knows");
}

std::string known_keys(const Json& reference) {
  std::string keys;
  for (const auto& [key, value] : reference.items()) keys += (keys.empty() ? "" : ", ") + key;
  return keys;
}

// Every key of `table` must exist in `reference` (the defaults' JSON); sub-tables recurse.
void check_keys(const toml::table& table, const Json& reference, const std::string& where,
                const fs::path& source) {
  for (const auto& [key, value] : table) {
    const std::string name(key.str());
    auto expected = reference.find(name);
    if (expected == reference.end()) {
      fail_at(source, static_cast<int64_t>(key.source().begin.line),
              "unknown key '{}' in {} (known keys: {})", name, where, known_keys(reference));
    }
    const std::string inner = where == "the file"
                                  ? "[" + name + "]"
                                  : where.substr(0, where.size() - 1) + "." + name + "]";
    if (expected->is_object()) {
      const auto* sub_table = value.as_table();
      if (sub_table == nullptr) fail_at(source, line_of(value), "{} must be a table", inner);
      check_keys(*sub_table, *expected, inner, source);
    } else if (value.is_table()) {
      fail_at(source, line_of(value), "'{}' in {} is a setting, not a table", name, where);
    }
  }
}

// The struct from its table, with the file and table named in any error.
template <typename T>
T read_section(const Json& json, const char* section, const fs::path& source) {
  if (!json.contains(section)) return T{};
  try {
    return T::from_json(json[section]);
  } catch (const Error& e) {
    fail("{}: [{}]: {}", source.string(), section, e.what());
  }
}

// Every setting is ASCII, and toml++ 3.3 reaches __builtin_unreachable() (undefined behaviour) on
// some non-ASCII characters, valid UTF-8 or not (marzer/tomlplusplus#190, #295; fixed upstream
// in 2026 by PR #305), so non-ASCII text never gets to it.
void check_ascii(std::string_view text, const fs::path& source) {
  auto is_ascii = [](char c) { return static_cast<unsigned char>(c) < 0x80; };
  auto bad = std::find_if_not(text.begin(), text.end(), is_ascii);
  if (bad == text.end()) return;
  const std::string_view before(text.begin(), bad);
  const size_t line_start = before.rfind('\n') + 1;  // 0 on the first line (npos + 1)
  fail_at(source, 1 + std::count(before.begin(), before.end(), '\n'),
          "non-ASCII byte 0x{:02X} at column {}: config files must be ASCII (comments too)",
          static_cast<unsigned char>(*bad), before.size() - line_start + 1);
}

}  // namespace

RunConfig parse_run_config(std::string_view toml_text, const fs::path& source) {
  check_ascii(toml_text, source);
  toml::table table;
  try {
    table = toml::parse(toml_text, source.string());
  } catch (const toml::parse_error& e) {
    fail_at(source, static_cast<int64_t>(e.source().begin.line), "not valid TOML: {}",
            e.description());
  }
  const Json reference = {{"model", ModelConfig{}.to_json()}, {"train", TrainConfig{}.to_json()}};
  check_keys(table, reference, "the file", source);
  const Json json = to_json(table, source);
  return {read_section<ModelConfig>(json, "model", source),
          read_section<TrainConfig>(json, "train", source)};
}

RunConfig load_run_config(const fs::path& file) {
  // Not an ifstream: one opens a directory without complaint and reads it as an empty file,
  // which would train silently with the defaults.
  return parse_run_config(read_whole_file(file), file);
}

}  // namespace haste
