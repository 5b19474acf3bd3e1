// Reading and writing the settings structs (ModelConfig, OptimizerConfig, DstConfig,
// TrainConfig) as JSON: checkpoints and config files store them, and a typo in a key or a
// value of the wrong type must be an error that names the key, not a silently ignored setting.
#pragma once

#include <algorithm>
#include <array>
#include <haste/error.hpp>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <type_traits>
#include <utility>

namespace haste::config_json {

// Whether nlohmann's get<T>() reads `value` without an out-of-range cast: it converts a float to
// an integer type with a plain cast, undefined behaviour for 1e300 into int64, so integer
// settings must be JSON integers (and the elements of arrays of them too).
template <typename T>
bool json_holds(const nlohmann::json& value) {
  if constexpr (std::is_same_v<T, bool>) {
    return value.is_boolean();
  } else if constexpr (std::is_integral_v<T>) {
    return value.is_number_integer();
  } else if constexpr (std::is_floating_point_v<T>) {
    return value.is_number();
  } else if constexpr (std::is_same_v<T, std::string>) {
    return value.is_string();
  } else if constexpr (requires { typename T::value_type; }) {
    return value.is_array() && std::all_of(value.begin(), value.end(), [](const auto& element) {
             return json_holds<typename T::value_type>(element);
           });
  } else {
    return true;  // nlohmann checks the rest itself
  }
}

// An enum's names, e.g. {{Activation::relu, "relu"}, {Activation::tanh, "tanh"}}.
template <typename E, size_t N>
using EnumNames = std::array<std::pair<E, const char*>, N>;

template <typename E, size_t N>
std::string enum_name(const EnumNames<E, N>& names, E value) {
  for (const auto& [e, name] : names) {
    if (e == value) return name;
  }
  fail("internal error: enum value {} has no name", static_cast<int>(value));
}

template <typename E, size_t N>
E parse_enum(const EnumNames<E, N>& names, const std::string& text, const char* what) {
  std::string choices;
  for (const auto& [e, name] : names) {
    if (text == name) return e;
    choices += choices.empty() ? name : std::string(", ") + name;
  }
  fail("unknown {} '{}' (choose one of: {})", what, text, choices);
}

// Each settings struct lists its fields once, in a free function template
//   template <typename Config, typename Visitor> void visit_fields(Config& c, Visitor& v) {
//     v.field("epochs", c.epochs);  v.enumeration("kind", kKinds, c.kind);
//     v.object("dst", c.dst);  ...
//   }
// which serves both directions: ObjectWriter builds the JSON, ObjectReader fills the struct.

class ObjectWriter {
 public:
  template <typename T>
  void field(const char* key, const T& value) {
    json[key] = value;
  }
  template <typename E, size_t N>
  void enumeration(const char* key, const EnumNames<E, N>& names, E value) {
    json[key] = enum_name(names, value);
  }
  template <typename T>
  void object(const char* key, const T& value) {
    json[key] = value.to_json();
  }

  nlohmann::json json = nlohmann::json::object();
};

// Reads the keys of one JSON object into fields; keys not read by the end are errors, and
// absent keys leave their fields unchanged.
class ObjectReader {
 public:
  ObjectReader(const nlohmann::json& json, std::string what) : json_(json), what_(std::move(what)) {
    check(json.is_object(), "{}: expected a JSON object, got {}", what_, json.type_name());
  }

  template <typename T>
  void field(const char* key, T& out) {
    seen_.insert(key);
    auto it = json_.find(key);
    if (it == json_.end()) return;
    bool read = json_holds<T>(*it);
    if (read) {
      try {
        out = it->template get<T>();
      } catch (const nlohmann::json::exception&) {
        read = false;
      }
    }
    if (!read) fail("{}: '{}' has the wrong type ({} {})", what_, key, it->type_name(), it->dump());
  }

  template <typename E, size_t N>
  void enumeration(const char* key, const EnumNames<E, N>& names, E& out) {
    std::string text;
    field(key, text);
    if (json_.contains(key)) out = parse_enum(names, text, (what_ + " '" + key + "'").c_str());
  }

  // Sub-objects go to their own from_json.
  template <typename T>
  void object(const char* key, T& out) {
    seen_.insert(key);
    auto it = json_.find(key);
    if (it != json_.end()) out = T::from_json(*it);
  }

  void finish() const {
    for (const auto& [key, value] : json_.items()) {
      check(seen_.contains(key), "{}: unknown key '{}' (known keys: {})", what_, key, known_keys());
    }
  }

 private:
  std::string known_keys() const {
    std::string out;
    for (const auto& key : seen_) out += out.empty() ? key : ", " + key;
    return out;
  }

  const nlohmann::json& json_;
  std::string what_;
  std::set<std::string> seen_;
};

// The two directions for any struct with a visit_fields overload.
template <typename Config>
nlohmann::json write_fields(const Config& config) {
  ObjectWriter writer;
  visit_fields(config, writer);
  return writer.json;
}

template <typename Config>
Config read_fields(const nlohmann::json& json, const char* what) {
  Config config;
  ObjectReader reader(json, what);
  visit_fields(config, reader);
  reader.finish();
  return config;
}

// read_fields, then the struct's own validate().
template <typename Config>
Config read_valid_fields(const nlohmann::json& json, const char* what) {
  Config config = read_fields<Config>(json, what);
  config.validate();
  return config;
}

}  // namespace haste::config_json
