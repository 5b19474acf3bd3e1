// Splitting the labels over ranks (see include/haste/shard/label_shards.hpp).
#include <algorithm>
#include <haste/error.hpp>
#include <haste/shard/label_shards.hpp>

namespace haste::shard {
namespace {

// Where rank r's stretch of n items begins: the first n % P ranks take one item more.
int64_t stretch_begin(int64_t n, int P, int r) {
  const int64_t per = n / P, extra = n % P;
  return r * per + std::min<int64_t>(r, extra);
}

}  // namespace

std::optional<std::pair<int64_t, int64_t>> label_rows(const LabelShard& shard,
                                                      std::string_view name, int64_t g) {
  if (name.ends_with("head.weight") || name.ends_with("head.bias")) {
    return std::pair{shard.head_begin, shard.head_end};
  }
  if (name.ends_with("tail.weight") || name.ends_with("tail.bias")) {
    return std::pair{shard.group_begin * g, shard.group_end * g};
  }
  if (name.ends_with("tail.indices")) return std::pair{shard.group_begin, shard.group_end};
  return std::nullopt;
}

int32_t shard_label(const LabelShard& shard, int64_t label, int64_t H, int64_t g) {
  if (label < H) {
    return label >= shard.head_begin && label < shard.head_end
               ? static_cast<int32_t>(label - shard.head_begin)
               : -1;
  }
  const int64_t slot = label - H, first_slot = shard.group_begin * g;
  return slot >= first_slot && slot < shard.group_end * g
             ? static_cast<int32_t>(shard.head_labels() + slot - first_slot)
             : -1;
}

std::vector<LabelShard> split_labels(int64_t H, int64_t G, int P) {
  check(P >= 1, "shard: {} shards; need at least 1", P);
  check(H >= 0 && G >= 0, "shard: {} head labels and {} groups", H, G);
  std::vector<LabelShard> shards(P);
  for (int r = 0; r < P; ++r) {
    shards[r] = {stretch_begin(H, P, r), stretch_begin(H, P, r + 1), stretch_begin(G, P, r),
                 stretch_begin(G, P, r + 1)};
  }
  return shards;
}

}  // namespace haste::shard
