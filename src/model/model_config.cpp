// ModelConfig and ModelShape: validation and JSON (see include/haste/model.hpp).
#include <concepts>
#include <haste/error.hpp>
#include <haste/model.hpp>
#include <limits>
#include <type_traits>

#include "model/config_json.hpp"

namespace haste {
namespace {

using config_json::EnumNames;
using Json = nlohmann::json;

constexpr EnumNames<Activation, 2> kActivations{
    {{Activation::relu, "relu"}, {Activation::tanh, "tanh"}}};
constexpr EnumNames<OutputKind, 2> kOutputKinds{
    {{OutputKind::haste, "haste"}, {OutputKind::dense, "dense"}}};
constexpr EnumNames<HeadRule, 3> kHeadRules{{{HeadRule::fraction, "fraction"},
                                             {HeadRule::count, "count"},
                                             {HeadRule::min_frequency, "min_frequency"}}};

}  // namespace

// The fields of each struct, for config_json's writer and reader (found by argument-dependent
// lookup, so they live in namespace haste; the constraint picks the struct).
template <typename Config, typename Visitor>
requires std::same_as<std::remove_const_t<Config>, ModelConfig>
void visit_fields(Config& c, Visitor& v) {
  v.field("hidden", c.hidden);
  v.enumeration("activation", kActivations, c.activation);
  v.field("dropout", c.dropout);
  v.field("normalize_input", c.normalize_input);
  v.enumeration("output", kOutputKinds, c.output);
  v.enumeration("head_rule", kHeadRules, c.head_rule);
  v.field("head_fraction", c.head_fraction);
  v.field("head_count", c.head_count);
  v.field("head_min_frequency", c.head_min_frequency);
  v.field("group_size", c.group_size);
  v.field("fan_in", c.fan_in);
  v.field("private_features", c.private_features);
  v.field("seed", c.seed);
}

template <typename Shape, typename Visitor>
requires std::same_as<std::remove_const_t<Shape>, ModelShape>
void visit_fields(Shape& s, Visitor& v) {
  v.field("sparse_input", s.sparse_input);
  v.field("input_dim", s.input_dim);
  v.field("num_labels", s.num_labels);
  v.field("head_labels", s.head_labels);
  v.field("groups", s.groups);
  v.field("group_size", s.group_size);
  v.field("fan_in", s.fan_in);
}

std::string to_string(Activation activation) {
  return config_json::enum_name(kActivations, activation);
}
std::string to_string(OutputKind output) { return config_json::enum_name(kOutputKinds, output); }
std::string to_string(HeadRule rule) { return config_json::enum_name(kHeadRules, rule); }
Activation parse_activation(const std::string& name) {
  return config_json::parse_enum(kActivations, name, "activation");
}
OutputKind parse_output_kind(const std::string& name) {
  return config_json::parse_enum(kOutputKinds, name, "output kind");
}
HeadRule parse_head_rule(const std::string& name) {
  return config_json::parse_enum(kHeadRules, name, "head rule");
}

void ModelConfig::validate() const {
  check(!hidden.empty() && hidden.size() <= 4,
        "model: 'hidden' needs 1 to 4 encoder widths (e.g. [512]), got {}", hidden.size());
  for (int64_t width : hidden) {
    check(width >= 1 && width <= (int64_t{1} << 20),
          "model: encoder width {} in 'hidden' must be in [1, 2^20]", width);
  }
  check(dropout >= 0 && dropout < 1, "model: 'dropout' = {} must be in [0, 1)", dropout);
  check(head_fraction >= 0 && head_fraction <= 1, "model: 'head_fraction' = {} must be in [0, 1]",
        head_fraction);
  check(head_count >= 0, "model: 'head_count' = {} must not be negative", head_count);
  check(head_min_frequency >= 0, "model: 'head_min_frequency' = {} must not be negative",
        head_min_frequency);
  check(group_size >= 1 && group_size <= 4096, "model: 'group_size' g = {} must be in [1, 4096]",
        group_size);
  check(fan_in >= 1, "model: 'fan_in' k = {} must be at least 1", fan_in);
  const int64_t d = hidden.back();
  check(!private_features || d >= 2,
        "model: private features split h in two halves; d = {} is too small", d);
  const int64_t d_tail = private_features ? d / 2 : d;
  check(output == OutputKind::dense || fan_in <= d_tail,
        "model: fan-in k = {} is larger than the tail's width of h ({} = {}); lower 'fan_in' or "
        "raise the last 'hidden' width",
        fan_in, private_features ? "d/2 with private features" : "d", d_tail);
}

Json ModelConfig::to_json() const { return config_json::write_fields(*this); }

ModelConfig ModelConfig::from_json(const Json& json) {
  return config_json::read_valid_fields<ModelConfig>(json, "model config");
}

Json ModelShape::to_json() const { return config_json::write_fields(*this); }

ModelShape ModelShape::from_json(const Json& json) {
  const ModelShape shape = config_json::read_fields<ModelShape>(json, "model shape");
  check(shape.input_dim >= 1 && shape.num_labels >= 1,
        "model shape: input_dim = {} and num_labels = {} must be positive", shape.input_dim,
        shape.num_labels);
  check(shape.head_labels >= 0 && shape.head_labels <= shape.num_labels,
        "model shape: head_labels = {} must be in [0, num_labels = {}]", shape.head_labels,
        shape.num_labels);
  check(shape.group_size >= 1 && shape.fan_in >= 1 && shape.groups >= 0,
        "model shape: groups = {}, group_size = {}, fan_in = {} are invalid", shape.groups,
        shape.group_size, shape.fan_in);
  // groups * group_size must not overflow (a corrupt checkpoint's metadata comes through here).
  check(shape.groups <= std::numeric_limits<int32_t>::max() / shape.group_size,
        "model shape: {} groups of {} labels are more than a model can hold", shape.groups,
        shape.group_size);
  check(shape.tail_slots() >= shape.tail_labels() &&
            shape.tail_slots() < shape.tail_labels() + shape.group_size,
        "model shape: {} groups of {} do not hold the {} tail labels", shape.groups,
        shape.group_size, shape.tail_labels());
  return shape;
}

}  // namespace haste
