// Dynamic sparse training on groups (DESIGN.md 5): every `interval` steps until `end` (a
// fraction of training), a fraction r_t = r0 (1 + cos(pi t / T_end)) / 2 of the tail's slots is
// pruned and regrown. Fan-in stays exactly k, so kernel shapes never change.
//
// Prune rules:
//   global     (the reference implementation's, the default): slot j of group G scores
//              mean_l |W[l, j]| over the group's labels; the globally lowest r_t fraction of
//              all G * k slots is pruned, so groups lose different numbers of slots.
//   group_norm (per group): each group loses its round(r_t * k) slots of smallest
//              ||W[G, j]||_2 over the group's labels.
// Regrow rules (the same number of features per group as it lost, none already in idx[G]):
//   random     (SET): uniformly at random;
//   gradient   (RigL): the largest group-gradient norm ||(dZg^T h)[:, f]||_2 over the model's
//              last batch (Model::last_tail_batch).
// New weights are zero; the optimizer state of changed slots is reset; indices are re-sorted
// with their weights (and optimizer state), so idx[G] stays sorted and distinct.
//
// On label shards (DESIGN.md 11): each rank rewires its own groups (TailPart) and the result is
// the one-rank rewiring of the whole tail, bit for bit. The global rule's threshold is the one
// thing a rank cannot find alone: the ranks all-gather their slots' scores and each computes the
// same threshold over the whole tail (ties broken by global slot id, as on one rank). Random
// streams are keyed by the global group id, and the gradient rule reads only the rank's own
// groups' dz (h is the same on every rank).
#pragma once

#include <cstdint>
#include <haste/model.hpp>
#include <haste/optimizer.hpp>
#include <haste/shard/communicator.hpp>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <string>

namespace haste {

enum class DstPrune { global, group_norm };
enum class DstRegrow { random, gradient };

// Off by default: on debdeps (5 epochs, 870 steps) DST was neutral to slightly harmful
// (P@1 70.3 with RigL 0.1 every 300 steps vs 70.5 without; 67.7 with random regrowth of 0.25
// every 100 steps); it pays where the tail is large and trained for many steps.
struct DstConfig {
  bool enabled = false;
  double fraction = 0.25;   // r0
  int64_t interval = 1000;  // steps between updates
  double end = 2.0 / 3.0;   // no updates after this fraction of training
  DstPrune prune = DstPrune::global;
  DstRegrow regrow = DstRegrow::random;

  void validate() const;
  nlohmann::json to_json() const;
  static DstConfig from_json(const nlohmann::json& json);

  // r_t at step `step` of `total_steps` (0 at and after the end).
  double fraction_at(int64_t step, int64_t total_steps) const;
  // Whether an update is due after step `step` (1-based count of steps done).
  bool due(int64_t step, int64_t total_steps) const;
};

std::string to_string(DstPrune prune);
std::string to_string(DstRegrow regrow);
DstPrune parse_dst_prune(const std::string& name);
DstRegrow parse_dst_regrow(const std::string& name);

struct DstResult {
  double fraction = 0;        // r_t used
  int64_t changed_slots = 0;  // slots pruned (= regrown), over all groups
};

// Where a rank's part of a tail split by groups sits (include/haste/shard/label_shards.hpp):
// the caller's tensors hold groups [group_begin, group_begin + G) of the whole tail (G of the
// shape it passes), and rank r's stretch follows rank r - 1's. The default is the whole tail on
// one rank.
struct TailPart {
  shard::Communicator* comm = nullptr;  // the run's ranks; null: one rank, the whole tail
  int64_t group_begin = 0;              // the part's first group in the whole tail
};

// Prunes and regrows `fraction` of the tail slots of `model` and fixes `optimizer`'s state.
// Random choices are drawn from `seed` (pass one derived from (run seed, step) for
// reproducible, resumable runs). A model without a tail is left alone. With `comm` (a
// multi-process run, Model::set_label_shards(Communicator&)), this process rewires its own
// label shard's groups only and the ranks exchange what the global rule needs; every rank must
// call it with the same arguments, and changed_slots counts the slots of all ranks.
DstResult apply_dst(Model& model, Optimizer& optimizer, DstPrune prune, DstRegrow regrow,
                    double fraction, uint64_t seed, shard::Communicator* comm = nullptr);

// The same rewiring on a tail held elsewhere (haste.torch keeps it in PyTorch tensors, the GPU
// layer on its device), or on a rank's part of it (`part`): `indices` [G, k] are rewired and
// `weights` [G*g, k] move with their features (regrown slots get 0). `source` [G, k] receives,
// for every new slot, the old slot it came from (-1: regrown), so that the caller can move
// other per-slot state (optimizer moments) the same way. `batch` (h [B, d], dz [B, G*g] with
// row stride batch.ldz) is read by the gradient rule only. With part.comm, every rank of it
// must call this with the same rules, fraction and seed (a rank without groups too): each
// rewires its part as the one-rank call would rewire those groups of the whole tail, and
// changed_slots counts the slots of all ranks. Throws haste::Error on sizes that do not match
// `shape` or indices that are not sorted and distinct.
DstResult rewire_tail(const GroupSharedShape& shape, std::span<int32_t> indices,
                      std::span<float> weights, const TailBatch& batch, DstPrune prune,
                      DstRegrow regrow, double fraction, uint64_t seed, std::span<int32_t> source,
                      const TailPart& part = {});

// The prune rule's score of every slot [G, k] of `weights` [G*g, k]: the mean |W| over the
// group's labels (global rule) or the L2 norm (group_norm) of the slot's column, summed in
// double in label order (a GPU computes the same values from its bf16 weights).
std::vector<double> dst_slot_scores(const GroupSharedShape& shape, std::span<const float> weights,
                                    DstPrune prune);

// rewire_tail without the weights, for a caller that holds them elsewhere (the GPU layer): from
// each slot's `scores` (dst_slot_scores' values) it rewires `indices` and fills `source` exactly
// as rewire_tail would; the caller then moves the weights and other per-slot state by `source`
// (regrown slots to zero).
DstResult rewire_tail_indices(const GroupSharedShape& shape, std::span<int32_t> indices,
                              std::span<const double> scores, const TailBatch& batch,
                              DstPrune prune, DstRegrow regrow, double fraction, uint64_t seed,
                              std::span<int32_t> source, const TailPart& part = {});

// The global prune rule's threshold: the (score, global slot id) of the
// llround(fraction * all slots)-th lowest slot of the whole tail, ties to the lower id; every
// slot at or below it is pruned. `scores` are `part`'s slots (dst_slot_scores' values); with
// part.comm every rank must call it, and all get the same key. nullopt: nothing to prune. For a
// caller that applies the rule itself (the GPU layer's device choice on a label shard).
struct DstSlotKey {
  double score = 0;
  int64_t slot = 0;
  bool operator<(const DstSlotKey& o) const {
    return score != o.score ? score < o.score : slot < o.slot;
  }
  bool operator<=(const DstSlotKey& o) const { return !(o < *this); }
};
std::optional<DstSlotKey> dst_global_prune_threshold(std::span<const double> scores,
                                                     const GroupSharedShape& shape,
                                                     const TailPart& part, double fraction);

// A rank's changed slots summed over part.comm's ranks (every rank must call it when there are
// several); the count itself on one rank.
int64_t dst_changed_slots_of_all_ranks(int64_t changed, const TailPart& part);

}  // namespace haste
