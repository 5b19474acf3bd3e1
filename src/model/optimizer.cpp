// AdamW and SGD with momentum over a model's named parameters, lazy on the sparse input layer,
// and the learning-rate schedule (see include/haste/optimizer.hpp).
#include <algorithm>
#include <cmath>
#include <concepts>
#include <haste/error.hpp>
#include <haste/optimizer.hpp>
#include <numbers>
#include <type_traits>

#include "cpu/vector_ops.hpp"
#include "model/config_json.hpp"
#include "model/slot_remap.hpp"

namespace haste {
namespace {

using config_json::EnumNames;
using Json = nlohmann::json;

constexpr EnumNames<OptimizerKind, 2> kOptimizerKinds{
    {{OptimizerKind::adamw, "adamw"}, {OptimizerKind::sgd, "sgd"}}};
constexpr EnumNames<LrDecay, 3> kLrDecays{
    {{LrDecay::constant, "constant"}, {LrDecay::linear, "linear"}, {LrDecay::cosine, "cosine"}}};

// Elementwise loops below this size stay on the calling thread.
constexpr int64_t kMinParallelElements = int64_t{1} << 15;

// AdamW, m_hat / (sqrt(v_hat) + eps), with the bias corrections as factors worked out once per
// step: one division and one square root per element, where three divisions made this loop
// the largest part of a CPU training step (perf, debdeps on 2 cores). The GPU's update
// (src/cuda/optimizer_element.cuh) has the same form.
struct AdamStep {
  float lr, beta1, beta2, eps, decay, inv_correction1, inv_sqrt_correction2;

  HASTE_VECTOR_CLONES void operator()(float* w, const float* g, float* m, float* v,
                                      int64_t n) const {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      m[i] = beta1 * m[i] + (1 - beta1) * g[i];
      v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
      const float update =
          (m[i] * inv_correction1) / (std::sqrt(v[i]) * inv_sqrt_correction2 + eps);
      w[i] -= lr * (update + decay * w[i]);
    }
  }
};

// w *= factor for every element (the decoupled weight decay of a lazily updated layer's rows).
void scale(std::span<float> w, float factor) {  // memory-bound: no vector clones
  const auto n = static_cast<int64_t>(w.size());
  float* data = w.data();
#pragma omp parallel for simd schedule(static) if (n >= kMinParallelElements)
  for (int64_t i = 0; i < n; ++i) data[i] *= factor;
}

struct SgdStep {
  float lr, momentum, decay;

  HASTE_VECTOR_CLONES void operator()(float* w, const float* g, float* buffer, float* /*unused*/,
                                      int64_t n) const {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      buffer[i] = momentum * buffer[i] + g[i] + decay * w[i];
      w[i] -= lr * buffer[i];
    }
  }
};

}  // namespace

std::string to_string(OptimizerKind kind) { return config_json::enum_name(kOptimizerKinds, kind); }
std::string to_string(LrDecay decay) { return config_json::enum_name(kLrDecays, decay); }
OptimizerKind parse_optimizer_kind(const std::string& name) {
  return config_json::parse_enum(kOptimizerKinds, name, "optimizer");
}
LrDecay parse_lr_decay(const std::string& name) {
  return config_json::parse_enum(kLrDecays, name, "learning-rate decay");
}

double LrSchedule::lr_at(double base_lr, int64_t step, int64_t total_steps) const {
  const double total = static_cast<double>(std::max<int64_t>(total_steps, 1));
  const double t = static_cast<double>(step);
  const double warmup = warmup_fraction * total;
  if (t < warmup) return base_lr * (t + 1) / warmup;
  if (decay == LrDecay::constant) return base_lr;
  const double progress = std::clamp((t - warmup) / std::max(1.0, total - warmup), 0.0, 1.0);
  const double shape = decay == LrDecay::linear
                           ? 1.0 - progress
                           : 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  return base_lr * (final_scale + (1.0 - final_scale) * shape);
}

void OptimizerConfig::validate() const {
  check(lr > 0 && std::isfinite(lr), "optimizer: 'lr' = {} must be positive", lr);
  check(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1,
        "optimizer: 'beta1' = {} and 'beta2' = {} must be in [0, 1)", beta1, beta2);
  check(eps > 0, "optimizer: 'eps' = {} must be positive", eps);
  check(weight_decay >= 0, "optimizer: 'weight_decay' = {} must not be negative", weight_decay);
  check(momentum >= 0 && momentum < 1, "optimizer: 'momentum' = {} must be in [0, 1)", momentum);
  check(schedule.warmup_fraction >= 0 && schedule.warmup_fraction <= 1,
        "optimizer: 'warmup_fraction' = {} must be in [0, 1]", schedule.warmup_fraction);
  check(schedule.final_scale >= 0 && schedule.final_scale <= 1,
        "optimizer: 'final_lr_scale' = {} must be in [0, 1]", schedule.final_scale);
}

template <typename Config, typename Visitor>
requires std::same_as<std::remove_const_t<Config>, OptimizerConfig>
void visit_fields(Config& c, Visitor& v) {
  v.enumeration("kind", kOptimizerKinds, c.kind);
  v.field("lr", c.lr);
  v.field("beta1", c.beta1);
  v.field("beta2", c.beta2);
  v.field("eps", c.eps);
  v.field("weight_decay", c.weight_decay);
  v.field("momentum", c.momentum);
  v.field("warmup_fraction", c.schedule.warmup_fraction);
  v.enumeration("decay", kLrDecays, c.schedule.decay);
  v.field("final_lr_scale", c.schedule.final_scale);
}

Json OptimizerConfig::to_json() const { return config_json::write_fields(*this); }

OptimizerConfig OptimizerConfig::from_json(const Json& json) {
  return config_json::read_valid_fields<OptimizerConfig>(json, "optimizer config");
}

Optimizer::Optimizer(const OptimizerConfig& config, Model& model) : config_(config), model_(model) {
  config_.validate();
  for (const Parameter& parameter : model.parameters()) {
    Slot slot{parameter.name, parameter.shape, {}, {}};
    slot.first.assign(parameter.value.size(), 0.0f);
    if (config_.kind == OptimizerKind::adamw) slot.second.assign(parameter.value.size(), 0.0f);
    slots_.push_back(std::move(slot));
  }
}

void Optimizer::update_rows(const Parameter& parameter, std::span<float> first,
                            std::span<float> second, std::span<const int32_t> rows, double lr) {
  const auto size = static_cast<int64_t>(parameter.value.size());
  const bool lazy = parameter.row_sparse;
  const int64_t width = lazy ? parameter.shape[1] : std::min<int64_t>(size, 4096);
  const int64_t blocks = lazy ? static_cast<int64_t>(rows.size()) : (size + width - 1) / width;
  // Each block (a touched row, or a stretch of a dense parameter) is updated by one thread:
  // the arithmetic is elementwise, so the result does not depend on the split.
  auto run = [&](const auto& update) {
#pragma omp parallel for schedule(static) if (blocks * width >= kMinParallelElements)
    for (int64_t i = 0; i < blocks; ++i) {
      const int64_t begin = lazy ? int64_t{rows[i]} * width : i * width;
      const int64_t n = std::min(width, size - begin);
      float* second_moment = second.empty() ? nullptr : second.data() + begin;
      update(parameter.value.data() + begin, parameter.grad.data() + begin, first.data() + begin,
             second_moment, n);
    }
  };
  auto decay = static_cast<float>(config_.weight_decay);
  if (config_.kind == OptimizerKind::adamw) {
    // AdamW's weight decay is decoupled from the gradient, so it shrinks every row of a lazily
    // updated layer at every step, as it does every element of a dense one; the touched rows'
    // step then runs without it. (Decaying only the touched rows left the rows of rare input
    // features nearly unregularised: debdeps P@1 69.9 -> 73.1 with this, docs/results.md.)
    if (lazy && decay > 0) {
      scale(parameter.value, 1.0f - static_cast<float>(lr) * decay);
      decay = 0;
    }
    const double t = static_cast<double>(steps_);
    run(AdamStep{static_cast<float>(lr), static_cast<float>(config_.beta1),
                 static_cast<float>(config_.beta2), static_cast<float>(config_.eps), decay,
                 static_cast<float>(1.0 / (1.0 - std::pow(config_.beta1, t))),
                 static_cast<float>(1.0 / std::sqrt(1.0 - std::pow(config_.beta2, t)))});
  } else {
    run(SgdStep{static_cast<float>(lr), static_cast<float>(config_.momentum), decay});
  }
}

void Optimizer::step(double lr) {
  ++steps_;
  std::vector<Parameter> parameters = model_.parameters();
  check(parameters.size() == slots_.size(),
        "optimizer: the model has {} parameters, the optimizer was made for {}", parameters.size(),
        slots_.size());
  for (size_t i = 0; i < parameters.size(); ++i) {
    Parameter parameter = parameters[i];
    std::span<float> first(slots_[i].first), second(slots_[i].second);
    const auto rows =
        only_shard_ ? shard::label_rows(only_shard_->first, parameter.name, only_shard_->second)
                    : std::nullopt;
    if (rows) {
      // The shard's stretch of rows: the same elementwise update on a shorter span.
      if (rows->second == rows->first) continue;
      const auto row_size = parameter.value.size() / static_cast<size_t>(parameter.shape[0]);
      const auto begin = static_cast<size_t>(rows->first) * row_size;
      const auto size = static_cast<size_t>(rows->second - rows->first) * row_size;
      parameter.value = parameter.value.subspan(begin, size);
      parameter.grad = parameter.grad.subspan(begin, size);
      first = first.subspan(begin, size);
      if (!second.empty()) second = second.subspan(begin, size);
    }
    update_rows(parameter, first, second, model_.touched_rows(), lr);
  }
}

void Optimizer::update_label_shard_only(const shard::LabelShard& shard, int64_t g) {
  only_shard_ = std::pair{shard, g};
}

void Optimizer::remap_tail_slots(const GroupSharedShape& shape,
                                 std::span<const int32_t> source_slots) {
  check(static_cast<int64_t>(source_slots.size()) == shape.G * shape.k,
        "optimizer: tail slot map has {} entries, expected G * k = {}", source_slots.size(),
        shape.G * shape.k);
  auto it = std::find_if(slots_.begin(), slots_.end(),
                         [](const Slot& slot) { return slot.name == "tail.weight"; });
  if (it == slots_.end()) return;
  for (std::vector<float>* state : {&it->first, &it->second}) {
    if (!state->empty()) model::remap_slots(*state, shape, source_slots);
  }
}

std::vector<NamedTensor<float>> Optimizer::state_tensors() {
  const std::string first = config_.kind == OptimizerKind::adamw ? "adam.m." : "sgd.momentum.";
  std::vector<NamedTensor<float>> out;
  for (Slot& slot : slots_) out.push_back({first + slot.name, slot.shape, slot.first});
  for (Slot& slot : slots_) {
    if (!slot.second.empty()) out.push_back({"adam.v." + slot.name, slot.shape, slot.second});
  }
  return out;
}

int64_t Optimizer::state_bytes() const {
  int64_t bytes = 0;
  for (const Slot& slot : slots_) {
    bytes += static_cast<int64_t>(slot.first.size() + slot.second.size()) * 4;
  }
  return bytes;
}

int64_t Optimizer::output_layer_state_bytes() const {
  int64_t bytes = 0;
  for (const Slot& slot : slots_) {
    if (slot.name.starts_with("head.") || slot.name.starts_with("tail.")) {
      bytes += static_cast<int64_t>(slot.first.size() + slot.second.size()) * 4;
    }
  }
  return bytes;
}

}  // namespace haste
