// Dynamic sparse training on the tail's groups (see include/haste/dst.hpp).
//
// Each group is rebuilt independently (OpenMP over groups, random streams keyed by (seed,
// group)), so the result does not depend on the thread count. The global prune rule needs one
// threshold over all slots first; it is found with nth_element on (score, slot id), whose ties
// are broken by slot id, so it is deterministic too.
#include <algorithm>
#include <cmath>
#include <concepts>
#include <haste/dst.hpp>
#include <haste/error.hpp>
#include <numbers>
#include <numeric>
#include <type_traits>

#include "data/random.hpp"
#include "model/blas.hpp"
#include "model/config_json.hpp"
#include "model/slot_remap.hpp"

namespace haste {
namespace {

using config_json::EnumNames;
using Json = nlohmann::json;

constexpr EnumNames<DstPrune, 2> kPruneRules{
    {{DstPrune::global, "global"}, {DstPrune::group_norm, "group_norm"}}};
constexpr EnumNames<DstRegrow, 2> kRegrowRules{
    {{DstRegrow::random, "random"}, {DstRegrow::gradient, "gradient"}}};

// Score of every slot [G, k]: mean |W| (global rule) or the L2 norm (per-group rule) of the
// slot's column of weights over the group's labels.
std::vector<double> slot_scores(const GroupSharedShape& s, std::span<const float> weights,
                                DstPrune prune) {
  std::vector<double> scores(s.G * s.k, 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t group = 0; group < s.G; ++group) {
    double* score = scores.data() + group * s.k;
    for (int64_t l = group * s.g; l < (group + 1) * s.g; ++l) {
      const float* w = weights.data() + l * s.k;
      for (int64_t j = 0; j < s.k; ++j) {
        score[j] += prune == DstPrune::global ? std::abs(w[j]) : double{w[j]} * w[j];
      }
    }
  }
  // Monotone transforms only (the ranking is what matters), but keep the documented values.
  for (double& score : scores) {
    score = prune == DstPrune::global ? score / static_cast<double>(s.g) : std::sqrt(score);
  }
  return scores;
}

// pruned[G * k + j] = 1 for the slots to prune.
std::vector<char> choose_pruned(const std::vector<double>& scores, const GroupSharedShape& s,
                                DstPrune prune, double fraction) {
  std::vector<char> pruned(scores.size(), 0);
  // A group can regrow at most d - k features (those not already in it).
  const int64_t per_group_cap = std::min(s.k, s.d - s.k);
  auto lower = [&](int64_t a, int64_t b) {
    return scores[a] != scores[b] ? scores[a] < scores[b] : a < b;
  };
  if (prune == DstPrune::global) {
    const auto total = static_cast<int64_t>(scores.size());
    const auto count = std::llround(fraction * static_cast<double>(total));
    std::vector<int64_t> order(total);
    std::iota(order.begin(), order.end(), 0);
    if (count <= 0) return pruned;
    std::nth_element(order.begin(), order.begin() + (count - 1), order.end(), lower);
    std::sort(order.begin(), order.begin() + count, lower);
    std::vector<int64_t> taken(s.G, 0);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t group = order[i] / s.k;
      if (taken[group] < per_group_cap) {
        pruned[order[i]] = 1;
        ++taken[group];
      }
    }
    return pruned;
  }
  const int64_t count =
      std::min<int64_t>(per_group_cap, std::llround(fraction * static_cast<double>(s.k)));
  std::vector<int64_t> order(s.k);
  for (int64_t group = 0; group < s.G && count > 0; ++group) {
    std::iota(order.begin(), order.end(), group * s.k);
    std::partial_sort(order.begin(), order.begin() + count, order.end(), lower);
    for (int64_t i = 0; i < count; ++i) pruned[order[i]] = 1;
  }
  return pruned;
}

// The group-gradient norm ||(dZg^T h)[:, f]||_2 of every feature f of h_tail, for one group.
void group_gradient_norms(const TailBatch& batch, const GroupSharedShape& s, int64_t group,
                          std::vector<float>& product, std::vector<double>& norms) {
  product.resize(s.g * s.d);
  blas::gemm_serial(blas::Op::transpose, blas::Op::none, s.g, s.d, batch.B, 1.0f,
                    batch.dz.data() + group * s.g, s.labels(), batch.h.data(), s.d, 0.0f,
                    product.data(), s.d);
  norms.assign(s.d, 0.0);
  for (int64_t l = 0; l < s.g; ++l) {
    for (int64_t f = 0; f < s.d; ++f)
      norms[f] += double{product[l * s.d + f]} * product[l * s.d + f];
  }
}

// New features for one group: `count` features not in `current`, at random or by gradient norm.
std::vector<int32_t> choose_regrown(std::span<const int32_t> current, int64_t count,
                                    DstRegrow regrow, const TailBatch& batch,
                                    const GroupSharedShape& s, int64_t group, uint64_t seed,
                                    std::vector<float>& product, std::vector<double>& norms) {
  std::vector<int32_t> candidates;
  candidates.reserve(s.d - s.k);
  for (int32_t f = 0, j = 0; f < s.d; ++f) {
    if (j < s.k && current[j] == f) {
      ++j;
    } else {
      candidates.push_back(f);
    }
  }
  if (regrow == DstRegrow::gradient) {
    group_gradient_norms(batch, s, group, product, norms);
    std::partial_sort(
        candidates.begin(), candidates.begin() + count, candidates.end(),
        [&](int32_t a, int32_t b) { return norms[a] != norms[b] ? norms[a] > norms[b] : a < b; });
  } else {
    Rng rng(hash_key(seed, group));  // partial Fisher-Yates: the first `count` are the sample
    for (int64_t i = 0; i < count; ++i) {
      const auto pick = i + static_cast<int64_t>(rng.below(candidates.size() - i));
      std::swap(candidates[i], candidates[pick]);
    }
  }
  candidates.resize(count);
  return candidates;
}

}  // namespace

std::string to_string(DstPrune prune) { return config_json::enum_name(kPruneRules, prune); }
std::string to_string(DstRegrow regrow) { return config_json::enum_name(kRegrowRules, regrow); }
DstPrune parse_dst_prune(const std::string& name) {
  return config_json::parse_enum(kPruneRules, name, "DST prune rule");
}
DstRegrow parse_dst_regrow(const std::string& name) {
  return config_json::parse_enum(kRegrowRules, name, "DST regrow rule");
}

void DstConfig::validate() const {
  check(fraction >= 0 && fraction <= 1, "dst: 'fraction' = {} must be in [0, 1]", fraction);
  check(interval >= 1, "dst: 'interval' = {} steps must be at least 1", interval);
  check(end >= 0 && end <= 1, "dst: 'end' = {} (a fraction of training) must be in [0, 1]", end);
}

template <typename Config, typename Visitor>
requires std::same_as<std::remove_const_t<Config>, DstConfig>
void visit_fields(Config& c, Visitor& v) {
  v.field("enabled", c.enabled);
  v.field("fraction", c.fraction);
  v.field("interval", c.interval);
  v.field("end", c.end);
  v.enumeration("prune", kPruneRules, c.prune);
  v.enumeration("regrow", kRegrowRules, c.regrow);
}

Json DstConfig::to_json() const { return config_json::write_fields(*this); }

DstConfig DstConfig::from_json(const Json& json) {
  return config_json::read_valid_fields<DstConfig>(json, "dst config");
}

double DstConfig::fraction_at(int64_t step, int64_t total_steps) const {
  const double t_end = end * static_cast<double>(total_steps);
  const auto t = static_cast<double>(step);
  if (t >= t_end) return 0.0;
  return fraction * (1.0 + std::cos(std::numbers::pi * t / t_end)) / 2.0;
}

bool DstConfig::due(int64_t step, int64_t total_steps) const {
  return enabled && step > 0 && step % interval == 0 && fraction_at(step, total_steps) > 0;
}

DstResult rewire_tail(const GroupSharedShape& s, std::span<int32_t> indices,
                      std::span<float> weights, const TailBatch& batch, DstPrune prune,
                      DstRegrow regrow, double fraction, uint64_t seed, std::span<int32_t> source) {
  check(fraction >= 0 && fraction <= 1, "dst: fraction {} must be in [0, 1]", fraction);
  s.validate();
  validate_group_indices(s, indices);
  check(weights.size() == static_cast<size_t>(s.labels() * s.k) &&
            source.size() == static_cast<size_t>(s.G * s.k),
        "dst: {} weights and {} source slots for G = {}, g = {}, k = {} (need G*g*k and G*k)",
        weights.size(), source.size(), s.G, s.g, s.k);
  std::iota(source.begin(), source.end(), 0);
  for (size_t slot = 0; slot < source.size(); ++slot) source[slot] %= static_cast<int32_t>(s.k);
  DstResult result{fraction, 0};
  if (s.G == 0 || fraction == 0 || s.k == s.d) return result;
  check(regrow != DstRegrow::gradient ||
            (batch.B > 0 && batch.d_tail == s.d &&
             batch.h.size() == static_cast<size_t>(batch.B * s.d) &&
             batch.dz.size() == static_cast<size_t>(batch.B * s.labels())),
        "dst: gradient-based regrowth needs the last batch's h [B, {}] and dz [B, {}] (got B = "
        "{}, {} and {} values; call compute_gradients first)",
        s.d, s.labels(), batch.B, batch.h.size(), batch.dz.size());

  const std::vector<char> pruned =
      choose_pruned(slot_scores(s, weights, prune), s, prune, fraction);
  int64_t changed = 0;
#pragma omp parallel reduction(+ : changed)
  {
    std::vector<float> product;
    std::vector<double> norms;
    std::vector<std::pair<int32_t, int32_t>> slots;  // (feature, old slot or -1)
#pragma omp for schedule(static)
    for (int64_t group = 0; group < s.G; ++group) {
      std::span<int32_t> group_indices = indices.subspan(group * s.k, s.k);
      slots.clear();
      for (int64_t j = 0; j < s.k; ++j) {
        if (!pruned[group * s.k + j]) slots.emplace_back(group_indices[j], static_cast<int32_t>(j));
      }
      const int64_t count = s.k - static_cast<int64_t>(slots.size());
      if (count > 0) {
        for (int32_t f :
             choose_regrown(group_indices, count, regrow, batch, s, group, seed, product, norms)) {
          slots.emplace_back(f, -1);
        }
        std::sort(slots.begin(), slots.end());
      }
      changed += count;
      for (int64_t j = 0; j < s.k; ++j) {
        group_indices[j] = slots[j].first;
        source[group * s.k + j] = slots[j].second;
      }
    }
  }
  // The weights move with their features; regrown slots start at zero.
  model::remap_slots(weights, s, source);
  result.changed_slots = changed;
  return result;
}

DstResult apply_dst(Model& model, Optimizer& optimizer, DstPrune prune, DstRegrow regrow,
                    double fraction, uint64_t seed) {
  GroupSharedParams<float>& tail = model.tail();
  std::vector<int32_t> source(tail.shape.G * tail.shape.k);
  const DstResult result =
      rewire_tail(tail.shape, tail.indices, tail.weights, model.last_tail_batch(), prune, regrow,
                  fraction, seed, source);
  // The optimizer state moves with the weights.
  if (result.changed_slots > 0) optimizer.remap_tail_slots(tail.shape, source);
  return result;
}

}  // namespace haste
