// DST on label shards (include/haste/dst.hpp, TailPart): P ranks, each rewiring its own stretch
// of groups with the scores all-gathered for the global rule, give the one-rank rewiring of the
// whole tail, bit for bit (indices, weights, source slots, changed-slot count), for every rule,
// uneven splits, ranks without groups, and scores full of ties (broken by global slot id). And
// the rewiring from slot scores alone (the GPU layer's) chooses as the one from the weights.
#include <gtest/gtest.h>

#include <cmath>
#include <haste/dst.hpp>
#include <haste/shard/in_process.hpp>
#include <haste/shard/label_shards.hpp>
#include <vector>

#include "test_util/expect_error.hpp"
#include "test_util/random_tensors.hpp"

namespace haste {
namespace {

struct Tail {
  GroupSharedShape shape;
  std::vector<int32_t> indices;
  std::vector<float> weights;
};

// A tail of G groups whose weights take few distinct magnitudes (with `ties`), so that many
// slots share a score and the tie-break decides.
Tail random_tail(int64_t G, bool ties, uint64_t seed) {
  test_util::RandomTensors random(seed);
  // d - k = 6 < k: the cap of d - k pruned slots per group binds at large fractions.
  Tail tail{{/*d=*/14, G, /*g=*/3, /*k=*/8}, {}, {}};
  tail.indices = random.group_indices(G, tail.shape.d, tail.shape.k);
  tail.weights = random.tensor<float>(G * tail.shape.g * tail.shape.k);
  if (ties) {
    for (float& w : tail.weights) w = std::round(w * 2.0f) / 2.0f;
  }
  return tail;
}

// The last batch of the whole tail: h [B, d], dz [B, G*g].
struct Batch {
  int64_t B = 6;
  std::vector<float> h, dz;
};

Batch random_batch(const GroupSharedShape& s, uint64_t seed) {
  test_util::RandomTensors random(seed);
  Batch batch;
  batch.h = random.tensor<float>(batch.B * s.d);
  batch.dz = random.tensor<float>(batch.B * s.labels());
  return batch;
}

struct Rewired {
  std::vector<int32_t> indices, source;
  std::vector<float> weights;
  int64_t changed = 0;
};

Rewired rewire_whole(Tail tail, const Batch& batch, DstPrune prune, DstRegrow regrow,
                     double fraction) {
  const GroupSharedShape& s = tail.shape;
  Rewired out;
  out.source.resize(s.G * s.k);
  out.changed = rewire_tail(s, tail.indices, tail.weights, {batch.B, s.d, batch.h, batch.dz}, prune,
                            regrow, fraction, 77, out.source)
                    .changed_slots;
  out.indices = tail.indices;
  out.weights = tail.weights;
  return out;
}

// The same tail over P in-process ranks, each rewiring a copy of its groups (split_labels'
// stretches) and reading its columns of the whole dz; the parts put back together.
Rewired rewire_sharded(const Tail& tail, const Batch& batch, DstPrune prune, DstRegrow regrow,
                       double fraction, int P) {
  const GroupSharedShape& s = tail.shape;
  const std::vector<shard::LabelShard> shards = shard::split_labels(0, s.G, P);
  Rewired out{tail.indices, std::vector<int32_t>(s.G * s.k, -2), tail.weights, 0};
  std::vector<int64_t> changed(P, -1);
  shard::InProcessGroup group(P);
  group.run([&](shard::Communicator& comm) {
    const shard::LabelShard& mine = shards[comm.rank()];
    const GroupSharedShape part{s.d, mine.groups(), s.g, s.k};
    const int64_t first = mine.group_begin;
    std::vector<int32_t> indices(tail.indices.begin() + first * s.k,
                                 tail.indices.begin() + mine.group_end * s.k);
    std::vector<float> weights(tail.weights.begin() + first * s.g * s.k,
                               tail.weights.begin() + mine.group_end * s.g * s.k);
    std::vector<int32_t> source(part.G * s.k);
    const TailBatch part_batch{batch.B, s.d, batch.h,
                               std::span<const float>(batch.dz).subspan(first * s.g), s.labels()};
    changed[comm.rank()] = rewire_tail(part, indices, weights, part_batch, prune, regrow, fraction,
                                       77, source, {&comm, first})
                               .changed_slots;
    // Ranks write disjoint stretches.
    std::copy(indices.begin(), indices.end(), out.indices.begin() + first * s.k);
    std::copy(source.begin(), source.end(), out.source.begin() + first * s.k);
    std::copy(weights.begin(), weights.end(), out.weights.begin() + first * s.g * s.k);
  });
  for (int r = 1; r < P; ++r) EXPECT_EQ(changed[r], changed[0]) << "rank " << r;
  out.changed = changed[0];
  return out;
}

void expect_same_rewiring(int64_t G, int P, bool ties, DstPrune prune, DstRegrow regrow,
                          double fraction) {
  SCOPED_TRACE(::testing::Message()
               << "G = " << G << ", P = " << P << ", ties " << ties << ", " << to_string(prune)
               << " / " << to_string(regrow) << ", fraction " << fraction);
  const Tail tail = random_tail(G, ties, 1000 + G);
  const Batch batch = random_batch(tail.shape, 2000 + G);
  const Rewired whole = rewire_whole(tail, batch, prune, regrow, fraction);
  const Rewired sharded = rewire_sharded(tail, batch, prune, regrow, fraction, P);
  EXPECT_GT(whole.changed, 0);
  EXPECT_EQ(sharded.changed, whole.changed);
  EXPECT_EQ(sharded.indices, whole.indices);
  EXPECT_EQ(sharded.source, whole.source);
  // Bit for bit: the weights only move (or become 0), so float equality is exact equality.
  EXPECT_EQ(sharded.weights, whole.weights);
  EXPECT_NE(whole.indices, tail.indices);
}

TEST(DstShards, TwoHalvesRewireAsTheWholeTail) {
  for (DstPrune prune : {DstPrune::global, DstPrune::group_norm}) {
    for (DstRegrow regrow : {DstRegrow::random, DstRegrow::gradient}) {
      for (bool ties : {false, true}) expect_same_rewiring(10, 2, ties, prune, regrow, 0.3);
    }
  }
}

// rewire_tail_indices from the slot scores (the GPU layer's path: scores computed where the
// weights are) chooses as rewire_tail does: the same indices, source slots and count.
TEST(DstShards, IndicesFromSlotScoresRewireAsRewireTail) {
  for (DstPrune prune : {DstPrune::global, DstPrune::group_norm}) {
    for (DstRegrow regrow : {DstRegrow::random, DstRegrow::gradient}) {
      for (bool ties : {false, true}) {
        SCOPED_TRACE(::testing::Message()
                     << to_string(prune) << " / " << to_string(regrow) << ", ties " << ties);
        Tail tail = random_tail(10, ties, 3000);
        const Batch batch = random_batch(tail.shape, 4000);
        const Rewired whole = rewire_whole(tail, batch, prune, regrow, 0.3);
        const GroupSharedShape& s = tail.shape;
        std::vector<int32_t> source(s.G * s.k);
        const int64_t changed =
            rewire_tail_indices(s, tail.indices, dst_slot_scores(s, tail.weights, prune),
                                {batch.B, s.d, batch.h, batch.dz}, prune, regrow, 0.3, 77, source)
                .changed_slots;
        EXPECT_GT(changed, 0);
        EXPECT_EQ(changed, whole.changed);
        EXPECT_EQ(tail.indices, whole.indices);
        EXPECT_EQ(source, whole.source);
      }
    }
  }
}

// Uneven stretches (7 groups over 3 ranks: 3, 2, 2), a rank without groups (2 groups over 3
// ranks), and a fraction large enough that the global rule's cap of d - k per group binds.
TEST(DstShards, UnevenSplitsAndEmptyRanks) {
  for (DstRegrow regrow : {DstRegrow::random, DstRegrow::gradient}) {
    expect_same_rewiring(7, 3, true, DstPrune::global, regrow, 0.45);
    expect_same_rewiring(2, 3, false, DstPrune::global, regrow, 0.25);
    expect_same_rewiring(2, 3, true, DstPrune::group_norm, regrow, 0.25);
    expect_same_rewiring(9, 4, true, DstPrune::global, regrow, 1.0);
  }
}

TEST(DstShards, PartsMustFollowOneAnotherInRankOrder) {
  const Tail tail = random_tail(4, false, 5);
  const GroupSharedShape& s = tail.shape;
  shard::InProcessGroup group(2);
  test_util::expect_error(
      [&] {
        group.run([&](shard::Communicator& comm) {
          // Both ranks claim groups 0..1.
          const GroupSharedShape part{s.d, 2, s.g, s.k};
          std::vector<int32_t> indices(tail.indices.begin(), tail.indices.begin() + 2 * s.k);
          std::vector<float> weights(tail.weights.begin(), tail.weights.begin() + 2 * s.g * s.k);
          std::vector<int32_t> source(2 * s.k);
          rewire_tail(part, indices, weights, {}, DstPrune::global, DstRegrow::random, 0.25, 1,
                      source, {&comm, 0});
        });
      },
      "must follow one another in rank order");
  std::vector<int32_t> indices(tail.indices), source(s.G * s.k);
  std::vector<float> weights(tail.weights);
  test_util::expect_error(
      [&] {
        rewire_tail(s, indices, weights, {}, DstPrune::global, DstRegrow::random, 0.25, 1, source,
                    {nullptr, 3});
      },
      "needs the communicator");
}

}  // namespace
}  // namespace haste
