// Dynamic sparse training on the tail's groups (see include/haste/dst.hpp).
//
// Each group is rebuilt independently (OpenMP over groups, random streams keyed by (seed,
// group)), so the result does not depend on the thread count. The global prune rule needs one
// threshold over all slots first; it is found with nth_element on (score, slot id), whose ties
// are broken by slot id, so it is deterministic too; a group then prunes its slots at or below
// it (its lowest, up to d - k), which is the same set as taking the lowest slots of the whole
// tail one by one while skipping groups that have reached d - k.
//
// On label shards a rank runs the same code on its groups: only the threshold needs the other
// ranks (their scores all-gathered, so that every rank finds the same one), group ids are made
// global by the part's first group (random streams, tie-breaking), and the changed-slot count is
// summed. One rank is the case without collectives.
#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <haste/dst.hpp>
#include <haste/error.hpp>
#include <haste/shard/label_shards.hpp>
#include <numbers>
#include <numeric>
#include <optional>
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

// The scores [G, k] of every group of the whole tail, in global slot order: the part's own on
// one rank; on several, every rank's part all-gathered (the parts' sizes first, padded to the
// largest, since an all-gather moves the same count from every rank).
std::vector<double> whole_tail_scores(std::span<const double> scores, const GroupSharedShape& s,
                                      const TailPart& part) {
  if (part.comm == nullptr || part.comm->size() == 1) return {scores.begin(), scores.end()};
  shard::Communicator& comm = *part.comm;
  const int P = comm.size();
  const std::array<int64_t, 2> mine = {part.group_begin, s.G};
  std::vector<int64_t> parts(2 * static_cast<size_t>(P));
  shard::all_gather_bits(comm, std::span<const int64_t>(mine), std::span<int64_t>(parts));
  int64_t total = 0, widest = 0;
  for (int r = 0; r < P; ++r) {
    check(parts[2 * r] == total,
          "dst: rank {} holds groups from {} on, but the ranks before it hold {} groups: the "
          "ranks' parts must follow one another in rank order",
          r, parts[2 * r], total);
    total += parts[2 * r + 1];
    widest = std::max(widest, parts[2 * r + 1]);
  }
  std::vector<double> padded(widest * s.k, 0.0), gathered(padded.size() * P);
  std::copy(scores.begin(), scores.end(), padded.begin());
  shard::all_gather_bits(comm, std::span<const double>(padded), std::span<double>(gathered));
  std::vector<double> all;
  all.reserve(total * s.k);
  for (int r = 0; r < P; ++r) {
    const auto first = gathered.begin() + static_cast<int64_t>(r) * widest * s.k;
    all.insert(all.end(), first, first + parts[2 * r + 1] * s.k);
  }
  return all;
}

// The global rule's threshold: the key of the llround(fraction * all slots)-th lowest slot of
// the whole tail (nullopt: none to prune). Every rank computes it from the same scores.
std::optional<DstSlotKey> global_threshold(const std::vector<double>& all_scores, double fraction) {
  const auto total = static_cast<int64_t>(all_scores.size());
  const auto count = std::llround(fraction * static_cast<double>(total));
  if (count <= 0) return std::nullopt;
  std::vector<int64_t> order(total);
  std::iota(order.begin(), order.end(), 0);
  std::nth_element(order.begin(), order.begin() + (count - 1), order.end(),
                   [&](int64_t a, int64_t b) {
                     return DstSlotKey{all_scores[a], a} < DstSlotKey{all_scores[b], b};
                   });
  const int64_t slot = order[count - 1];
  return DstSlotKey{all_scores[slot], slot};
}

// pruned[j] = 1 for the slots of group `group` (global id `global_group`) to prune, its lowest
// by (score, slot): those at or below the global rule's `threshold`, or round(fraction * k)
// (group_norm); at most d - k either way (a group can regrow only the features not in it).
void choose_pruned(std::span<const double> scores, const GroupSharedShape& s, int64_t global_group,
                   DstPrune prune, double fraction, const std::optional<DstSlotKey>& threshold,
                   std::vector<int64_t>& order, std::vector<char>& pruned) {
  const int64_t first_slot = global_group * s.k;
  auto key = [&](int64_t j) { return DstSlotKey{scores[j], first_slot + j}; };
  int64_t count = 0;
  if (prune == DstPrune::global) {
    for (int64_t j = 0; j < s.k && threshold; ++j) count += key(j) <= *threshold ? 1 : 0;
  } else {
    count = std::llround(fraction * static_cast<double>(s.k));
  }
  count = std::min({count, s.k, s.d - s.k});
  pruned.assign(s.k, 0);
  if (count <= 0) return;
  order.resize(s.k);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + count, order.end(),
                    [&](int64_t a, int64_t b) { return key(a) < key(b); });
  for (int64_t i = 0; i < count; ++i) pruned[order[i]] = 1;
}

// The group-gradient norm ||(dZg^T h)[:, f]||_2 of every feature f of h_tail, for the group
// whose g columns of dz (row stride ldz) start at `dz`.
void group_gradient_norms(const TailBatch& batch, const float* dz, int64_t ldz,
                          const GroupSharedShape& s, std::vector<float>& product,
                          std::vector<double>& norms) {
  product.resize(s.g * s.d);
  blas::gemm_serial(blas::Op::transpose, blas::Op::none, s.g, s.d, batch.B, 1.0f, dz, ldz,
                    batch.h.data(), s.d, 0.0f, product.data(), s.d);
  norms.assign(s.d, 0.0);
  for (int64_t l = 0; l < s.g; ++l) {
    for (int64_t f = 0; f < s.d; ++f)
      norms[f] += double{product[l * s.d + f]} * product[l * s.d + f];
  }
}

// New features for group `group` of the caller's tensors (`global_group` of the whole tail,
// which keys its random stream): `count` features not in `current`, at random or by gradient
// norm.
std::vector<int32_t> choose_regrown(std::span<const int32_t> current, int64_t count,
                                    DstRegrow regrow, const TailBatch& batch, int64_t ldz,
                                    const GroupSharedShape& s, int64_t group, int64_t global_group,
                                    uint64_t seed, std::vector<float>& product,
                                    std::vector<double>& norms) {
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
    group_gradient_norms(batch, batch.dz.data() + group * s.g, ldz, s, product, norms);
    std::partial_sort(
        candidates.begin(), candidates.begin() + count, candidates.end(),
        [&](int32_t a, int32_t b) { return norms[a] != norms[b] ? norms[a] > norms[b] : a < b; });
  } else {
    // Partial Fisher-Yates: the first `count` are the sample.
    Rng rng(hash_key(seed, global_group));
    for (int64_t i = 0; i < count; ++i) {
      const auto pick = i + static_cast<int64_t>(rng.below(candidates.size() - i));
      std::swap(candidates[i], candidates[pick]);
    }
  }
  candidates.resize(count);
  return candidates;
}

// source [G, k] = the identity: every slot keeps its own (k slots per group).
void identity_slots(std::span<int32_t> source, int64_t k) {
  std::iota(source.begin(), source.end(), 0);
  for (int32_t& slot : source) slot %= static_cast<int32_t>(k);
}

}  // namespace

std::vector<double> dst_slot_scores(const GroupSharedShape& s, std::span<const float> weights,
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

std::optional<DstSlotKey> dst_global_prune_threshold(std::span<const double> scores,
                                                     const GroupSharedShape& shape,
                                                     const TailPart& part, double fraction) {
  return global_threshold(whole_tail_scores(scores, shape, part), fraction);
}

int64_t dst_changed_slots_of_all_ranks(int64_t changed, const TailPart& part) {
  if (part.comm == nullptr || part.comm->size() == 1) return changed;
  double all[1] = {static_cast<double>(changed)};  // exact: integers far below 2^53
  part.comm->all_reduce(std::span<double>(all));
  return static_cast<int64_t>(all[0]);
}

DstResult rewire_tail_indices(const GroupSharedShape& s, std::span<int32_t> indices,
                              std::span<const double> scores, const TailBatch& batch,
                              DstPrune prune, DstRegrow regrow, double fraction, uint64_t seed,
                              std::span<int32_t> source, const TailPart& part) {
  check(fraction >= 0 && fraction <= 1, "dst: fraction {} must be in [0, 1]", fraction);
  check(part.comm != nullptr || part.group_begin == 0,
        "dst: a part of the tail (groups from {} on) needs the communicator of its ranks",
        part.group_begin);
  const bool sharded = part.comm != nullptr && part.comm->size() > 1;
  DstResult result{fraction, 0};
  // A rank without groups still joins the collectives; one rank with no tail has nothing to do.
  if (s.G == 0 && !sharded) return result;
  s.validate();
  validate_group_indices(s, indices);
  check(scores.size() == static_cast<size_t>(s.G * s.k) &&
            source.size() == static_cast<size_t>(s.G * s.k),
        "dst: {} slot scores and {} source slots for G = {}, k = {} (need G*k)", scores.size(),
        source.size(), s.G, s.k);
  identity_slots(source, s.k);
  if (fraction == 0 || s.k == s.d) return result;  // the same on every rank
  const int64_t ldz = batch.ldz > 0 ? batch.ldz : s.labels();
  check(regrow != DstRegrow::gradient || s.G == 0 ||
            (batch.B > 0 && batch.d_tail == s.d && ldz >= s.labels() &&
             batch.h.size() == static_cast<size_t>(batch.B * s.d) &&
             batch.dz.size() >= static_cast<size_t>((batch.B - 1) * ldz + s.labels())),
        "dst: gradient-based regrowth needs the last batch's h [B, {}] and dz [B, {}] (got B = "
        "{}, {} and {} values with row stride {}; call compute_gradients first)",
        s.d, s.labels(), batch.B, batch.h.size(), batch.dz.size(), ldz);

  std::optional<DstSlotKey> threshold;
  if (prune == DstPrune::global) {
    threshold = dst_global_prune_threshold(scores, s, part, fraction);
  }
  int64_t changed = 0;
#pragma omp parallel reduction(+ : changed)
  {
    std::vector<float> product;
    std::vector<double> norms;
    std::vector<int64_t> order;
    std::vector<char> pruned;
    std::vector<std::pair<int32_t, int32_t>> slots;  // (feature, old slot or -1)
#pragma omp for schedule(static)
    for (int64_t group = 0; group < s.G; ++group) {
      const int64_t global_group = part.group_begin + group;
      std::span<int32_t> group_indices = indices.subspan(group * s.k, s.k);
      choose_pruned(scores.subspan(group * s.k, s.k), s, global_group, prune, fraction, threshold,
                    order, pruned);
      slots.clear();
      for (int64_t j = 0; j < s.k; ++j) {
        if (!pruned[j]) slots.emplace_back(group_indices[j], static_cast<int32_t>(j));
      }
      const int64_t count = s.k - static_cast<int64_t>(slots.size());
      if (count > 0) {
        for (int32_t f : choose_regrown(group_indices, count, regrow, batch, ldz, s, group,
                                        global_group, seed, product, norms)) {
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
  result.changed_slots = dst_changed_slots_of_all_ranks(changed, part);
  return result;
}

DstResult rewire_tail(const GroupSharedShape& s, std::span<int32_t> indices,
                      std::span<float> weights, const TailBatch& batch, DstPrune prune,
                      DstRegrow regrow, double fraction, uint64_t seed, std::span<int32_t> source,
                      const TailPart& part) {
  check(weights.size() == static_cast<size_t>(s.labels() * s.k),
        "dst: {} weights for G = {}, g = {}, k = {} (need G*g*k)", weights.size(), s.G, s.g, s.k);
  const DstResult result = rewire_tail_indices(s, indices, dst_slot_scores(s, weights, prune),
                                               batch, prune, regrow, fraction, seed, source, part);
  // The weights move with their features; regrown slots start at zero.
  if (result.changed_slots > 0 && s.G > 0) model::remap_slots(weights, s, source);
  return result;
}

DstResult apply_dst(Model& model, Optimizer& optimizer, DstPrune prune, DstRegrow regrow,
                    double fraction, uint64_t seed, shard::Communicator* comm) {
  GroupSharedParams<float>& tail = model.tail();
  const GroupSharedShape& s = tail.shape;
  if (s.G == 0) return {fraction, 0};  // no tail: the same on every rank
  std::vector<int32_t> source(s.G * s.k);
  // One rank rewires the whole tail; a rank of a multi-process run its label shard's groups,
  // which its tensors hold at their place in the whole tail's (and its dz columns likewise).
  shard::LabelShard mine{0, 0, 0, s.G};
  if (comm != nullptr) {
    mine = shard::split_labels(model.shape().head_labels, s.G, comm->size())[comm->rank()];
  }
  const GroupSharedShape part_shape{s.d, mine.groups(), s.g, s.k};
  TailBatch batch = model.last_tail_batch();
  if (!batch.dz.empty()) {
    batch.dz = batch.dz.subspan(mine.group_begin * s.g);
    batch.ldz = s.labels();
  }
  auto rows = [&](auto& values, int64_t per_group) {
    return std::span(values).subspan(mine.group_begin * per_group, mine.groups() * per_group);
  };
  identity_slots(source, s.k);  // other groups keep their slots and optimizer state
  const DstResult result =
      rewire_tail(part_shape, rows(tail.indices, s.k), rows(tail.weights, s.g * s.k), batch, prune,
                  regrow, fraction, seed, rows(source, s.k), {comm, mine.group_begin});
  // The optimizer state moves with the weights.
  if (result.changed_slots > 0) optimizer.remap_tail_slots(s, source);
  return result;
}

}  // namespace haste
