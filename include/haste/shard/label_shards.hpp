// How the output layer is split over P ranks (DESIGN.md 11): by label groups. Model label ids
// are head labels 0..H-1, then the tail's groups in order, so a rank's labels are one stretch of
// the head and one stretch of groups: rank r owns head labels [head_begin, head_end) and tail
// groups [group_begin, group_end). Ranks take their stretches in rank order, and the sizes of
// any two ranks' stretches differ by at most one (the first ranks take the remainder).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

namespace haste::shard {

struct LabelShard {
  int64_t head_begin = 0, head_end = 0;    // head labels
  int64_t group_begin = 0, group_end = 0;  // tail groups

  int64_t head_labels() const { return head_end - head_begin; }
  int64_t groups() const { return group_end - group_begin; }
  bool operator==(const LabelShard&) const = default;
};

// The rows [begin, end) of tensor `name` that `shard` owns when the tensor is split by labels,
// for a tail of groups of `g`: head.weight, head.bias -> its head labels; tail.weight,
// tail.bias -> its groups' slots; tail.indices -> its groups. The name may carry a prefix (an
// optimizer state's, "adam.m.head.weight"). Every other tensor is not split: nullopt.
std::optional<std::pair<int64_t, int64_t>> label_rows(const LabelShard& shard,
                                                      std::string_view name, int64_t g);

// Model label `label` (of a layer with H head labels and groups of g) as `shard` numbers its own
// labels (its head labels, then its tail slots, as the shard's part of the layer is laid out),
// or -1 when another shard owns it.
int32_t shard_label(const LabelShard& shard, int64_t label, int64_t H, int64_t g);

// The P shards of a layer with H head labels and G tail groups (P >= 1; a shard may be empty
// when P exceeds H or G).
std::vector<LabelShard> split_labels(int64_t H, int64_t G, int P);

}  // namespace haste::shard
