#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <haste/error.hpp>
#include <haste/label_grouping.hpp>
#include <numeric>
#include <vector>

#include "data/random.hpp"
#include "test_util/csr_builder.hpp"

namespace haste {
namespace {

// Label vectors planted around `clusters` directions, `cluster_size` labels each, label ids
// shuffled so that ids say nothing about clusters. Sparse: a cluster owns 20 topic features; a
// label keeps each with probability 0.8 (weight 1 + noise) and adds 10 random features.
struct Planted {
  CsrMatrix sparse;
  DenseMatrix dense;
  std::vector<int32_t> cluster_of;  // per label id
};

Planted planted_clusters(int64_t clusters, int64_t cluster_size, uint64_t seed) {
  constexpr int64_t kFeatures = 5000, kTopic = 20, kNoise = 10, kDims = 48;
  Rng rng(seed);
  const int64_t L = clusters * cluster_size;
  std::vector<int32_t> ids(L);
  std::iota(ids.begin(), ids.end(), 0);
  for (int64_t i = L - 1; i > 0; --i) std::swap(ids[i], ids[rng.below(i + 1)]);

  Planted out;
  out.cluster_of.assign(L, -1);
  std::vector<std::vector<int32_t>> topic(clusters);
  std::vector<std::vector<float>> direction(clusters);
  for (int64_t c = 0; c < clusters; ++c) {
    for (int64_t j = 0; j < kTopic; ++j) topic[c].push_back(rng.below(kFeatures));
    for (int64_t j = 0; j < kDims; ++j) direction[c].push_back(rng.uniform(-1, 1));
  }
  std::vector<std::vector<std::pair<int32_t, float>>> rows(L);
  out.dense = {L, kDims, std::vector<float>(L * kDims)};
  for (int64_t i = 0; i < L; ++i) {
    const int64_t c = i / cluster_size;
    const int32_t label = ids[i];
    out.cluster_of[label] = static_cast<int32_t>(c);
    std::vector<std::pair<int32_t, float>> entries;
    for (int32_t f : topic[c]) {
      if (rng.bernoulli(0.8)) entries.emplace_back(f, 1.f + rng.uniform(-0.3, 0.3));
    }
    for (int64_t j = 0; j < kNoise; ++j) entries.emplace_back(rng.below(kFeatures), rng.uniform());
    std::sort(entries.begin(), entries.end());
    for (auto& e : entries) {  // merge repeated features
      if (rows[label].empty() || rows[label].back().first != e.first) {
        rows[label].push_back(e);
      } else {
        rows[label].back().second += e.second;
      }
    }
    for (int64_t j = 0; j < kDims; ++j) {
      out.dense.data[label * kDims + j] = direction[c][j] + 0.6f * rng.uniform(-1, 1);
    }
  }
  out.sparse = test::csr_with_values(kFeatures, rows);
  return out;
}

// Fraction of within-group label pairs that share a planted cluster.
double pair_purity(const LabelGrouping& grouping, const std::vector<int32_t>& cluster_of) {
  int64_t same = 0, pairs = 0;
  for (int64_t group = 0; group < grouping.num_groups(); ++group) {
    auto members = grouping.group(group);
    for (size_t a = 0; a < members.size(); ++a) {
      for (size_t b = a + 1; b < members.size(); ++b) {
        same += cluster_of[members[a]] == cluster_of[members[b]];
        ++pairs;
      }
    }
  }
  return pairs > 0 ? static_cast<double>(same) / pairs : 0.0;
}

void expect_partition(const LabelGrouping& grouping, std::vector<int32_t> expected_labels) {
  std::vector<int32_t> got = grouping.order;
  std::sort(got.begin(), got.end());
  std::sort(expected_labels.begin(), expected_labels.end());
  EXPECT_EQ(got, expected_labels) << "every label exactly once";
  for (int64_t group = 0; group + 1 < grouping.num_groups(); ++group) {
    EXPECT_EQ(static_cast<int64_t>(grouping.group(group).size()), grouping.group_size);
  }
}

// Runs `body` with `threads` OpenMP threads, then restores the previous setting.
template <typename Body>
auto with_threads(int threads, Body body) {
  const int previous = omp_get_max_threads();
  omp_set_num_threads(threads);
  auto result = body();
  omp_set_num_threads(previous);
  return result;
}

TEST(BalancedKmeans, EveryLabelOnceAndFullGroupsButTheLast) {
  const Planted data = planted_clusters(40, 25, 1);  // 1000 labels
  const LabelGrouping grouping = group_labels(data.sparse, 32, 5);
  EXPECT_EQ(grouping.group_size, 32);
  EXPECT_EQ(grouping.num_groups(), 32);  // 31 full groups and one of 8
  EXPECT_EQ(grouping.padding(), 24);
  EXPECT_EQ(grouping.group(31).size(), 8u);
  std::vector<int32_t> all(1000);
  std::iota(all.begin(), all.end(), 0);
  expect_partition(grouping, all);
  EXPECT_THROW(grouping.group(32), Error);
}

TEST(BalancedKmeans, GroupsOnlyTheGivenLabels) {
  const Planted data = planted_clusters(16, 20, 2);
  std::vector<int32_t> odd;
  for (int32_t label = 1; label < data.sparse.rows; label += 2) odd.push_back(label);
  const LabelGrouping grouping = group_labels(data.sparse, odd, 16, 3);
  EXPECT_EQ(grouping.num_labels(), 160);
  EXPECT_EQ(grouping.num_groups(), 10);
  EXPECT_EQ(grouping.padding(), 0);
  expect_partition(grouping, odd);
}

TEST(BalancedKmeans, EmptyVectorsAreAppendedInInputOrder) {
  Planted data = planted_clusters(8, 10, 3);  // 80 labels
  // Empty the vectors of labels 5, 17 and 60 (one of them by explicit zeros).
  CsrMatrix& m = data.sparse;
  CsrMatrix edited;
  edited.cols = m.cols;
  for (int64_t label = 0; label < m.rows; ++label) {
    std::vector<float> values(m.row_values(label).begin(), m.row_values(label).end());
    if (label == 60) std::fill(values.begin(), values.end(), 0.f);
    if (label == 5 || label == 17) {
      edited.append_row({}, {});
    } else {
      edited.append_row(m.row_indices(label), values);
    }
  }
  const std::vector<int32_t> labels = {60, 0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12,
                                       13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25};
  const LabelGrouping grouping = group_labels(edited, labels, 8, 4);
  expect_partition(grouping, labels);
  const std::vector<int32_t> tail(grouping.order.end() - 3, grouping.order.end());
  EXPECT_EQ(tail, (std::vector<int32_t>{60, 5, 17}));
}

TEST(BalancedKmeans, SmallAndDegenerateInputs) {
  const Planted data = planted_clusters(4, 5, 4);  // 20 labels
  // No labels.
  const LabelGrouping none = group_labels(data.sparse, std::span<const int32_t>{}, 8, 1);
  EXPECT_EQ(none.num_groups(), 0);
  EXPECT_EQ(none.padding(), 0);
  // At most one group: nothing to split, input order kept.
  const std::vector<int32_t> few = {7, 3, 11};
  EXPECT_EQ(group_labels(data.sparse, few, 8, 1).order, few);
  EXPECT_EQ(group_labels(data.sparse, few, 3, 1).order, few);
  // Groups of one label: a permutation.
  const LabelGrouping singles = group_labels(data.sparse, 1, 1);
  EXPECT_EQ(singles.num_groups(), 20);
  std::vector<int32_t> all(20);
  std::iota(all.begin(), all.end(), 0);
  expect_partition(singles, all);
  // Identical vectors: any balanced split is fine, but it must still be a partition.
  CsrMatrix same;
  same.cols = 3;
  for (int i = 0; i < 50; ++i) {
    same.append_row(std::vector<int32_t>{0, 2}, std::vector<float>{1, 1});
  }
  std::vector<int32_t> fifty(50);
  std::iota(fifty.begin(), fifty.end(), 0);
  expect_partition(group_labels(same, 8, 1), fifty);
}

TEST(BalancedKmeans, RejectsBadArguments) {
  const Planted data = planted_clusters(4, 5, 5);
  const std::vector<int32_t> duplicate = {1, 2, 1};
  const std::vector<int32_t> out_of_range = {1, 20};
  const std::vector<int32_t> negative = {-1};
  EXPECT_THROW(group_labels(data.sparse, duplicate, 2, 1), Error);
  EXPECT_THROW(group_labels(data.sparse, out_of_range, 2, 1), Error);
  EXPECT_THROW(group_labels(data.sparse, negative, 2, 1), Error);
  EXPECT_THROW(group_labels(data.sparse, 0, 1), Error);
  EXPECT_THROW(group_labels(data.sparse, 4, 1, /*max_iterations=*/0), Error);
  EXPECT_THROW(group_labels(data.sparse, 4, 1, 20, /*restarts=*/0), Error);
  DenseMatrix nan_row = data.dense;
  nan_row.data[3] = std::nanf("");
  EXPECT_THROW(group_labels(nan_row, 4, 1), Error);
  CsrMatrix bad_index = data.sparse;
  bad_index.indices[0] = static_cast<int32_t>(bad_index.cols);
  EXPECT_THROW(group_labels(bad_index, 4, 1), Error);
  CsrMatrix unsorted = data.sparse;
  ASSERT_GE(unsorted.indptr[1], 2);
  std::swap(unsorted.indices[0], unsorted.indices[1]);
  EXPECT_THROW(group_labels(unsorted, 4, 1), Error);
}

TEST(BalancedKmeans, SameSeedSameGroupingForAnyThreadCount) {
  // 6000 labels: large enough that with 2+ threads the top nodes are split by all threads
  // together (the wide path), so this compares it with the one-thread path too.
  const Planted data = planted_clusters(150, 40, 6);
  auto sparse_run = [&] { return group_labels(data.sparse, 32, 11).order; };
  auto restarted_run = [&] { return group_labels(data.sparse, 32, 11, 20, 2).order; };
  auto dense_run = [&] { return group_labels(data.dense, 32, 11).order; };
  const auto sparse_one = with_threads(1, sparse_run);
  const auto dense_one = with_threads(1, dense_run);
  const auto restarted_one = with_threads(1, restarted_run);
  for (int threads : {2, 3}) {
    EXPECT_EQ(with_threads(threads, sparse_run), sparse_one) << threads << " threads, sparse";
    EXPECT_EQ(with_threads(threads, dense_run), dense_one) << threads << " threads, dense";
    EXPECT_EQ(with_threads(threads, restarted_run), restarted_one) << threads << " threads";
  }
  EXPECT_EQ(sparse_run(), sparse_one) << "same seed, same call";
  EXPECT_NE(group_labels(data.sparse, 32, 12).order, sparse_one) << "the seed matters";
}

TEST(BalancedKmeans, RecoversPlantedClusters) {
  // Clusters of exactly g labels: a perfect grouping has purity 1, a random one about
  // 1 / clusters. One 2-means run per node can still cut a planted cluster when its random
  // start is unlucky, so the purity is averaged over five data sets.
  constexpr int kGroup = 16;
  constexpr int kDataSets = 5;
  double sparse_purity = 0, dense_purity = 0, restarted_purity = 0, shuffled_purity = 0;
  for (int seed = 1; seed <= kDataSets; ++seed) {
    const Planted sparse_data = planted_clusters(48, kGroup, seed);
    const LabelGrouping sparse = group_labels(sparse_data.sparse, kGroup, 1);
    sparse_purity += pair_purity(sparse, sparse_data.cluster_of) / kDataSets;
    restarted_purity += pair_purity(group_labels(sparse_data.sparse, kGroup, 1, 20, /*restarts=*/3),
                                    sparse_data.cluster_of) /
                        kDataSets;
    // Dense: 16 random directions in 48 dimensions are far from orthogonal, a harder case.
    const Planted dense_data = planted_clusters(16, kGroup, seed);
    dense_purity +=
        pair_purity(group_labels(dense_data.dense, kGroup, 1), dense_data.cluster_of) / kDataSets;

    LabelGrouping shuffled = sparse;
    Rng rng(seed);
    for (size_t i = shuffled.order.size() - 1; i > 0; --i) {
      std::swap(shuffled.order[i], shuffled.order[rng.below(i + 1)]);
    }
    shuffled_purity += pair_purity(shuffled, sparse_data.cluster_of) / kDataSets;
    EXPECT_GT(mean_group_cosine(sparse_data.sparse, sparse),
              3 * mean_group_cosine(sparse_data.sparse, shuffled));
  }
  std::printf(
      "planted-cluster pair purity: sparse %.3f, sparse with 3 restarts %.3f, dense %.3f, "
      "random grouping %.3f\n",
      sparse_purity, restarted_purity, dense_purity, shuffled_purity);
  EXPECT_GT(sparse_purity, 0.95);
  EXPECT_GT(restarted_purity, 0.98);
  EXPECT_GT(dense_purity, 0.9);
  EXPECT_LT(shuffled_purity, 0.1);
}

TEST(GroupCohesion, MatchesPairwiseCosines) {
  const Planted data = planted_clusters(6, 7, 8);  // 42 labels, groups of 5 (last of 2)
  const LabelGrouping grouping = group_labels(data.dense, 5, 2);
  double total = 0;
  for (int64_t group = 0; group < grouping.num_groups(); ++group) {
    auto members = grouping.group(group);
    double sum = 0;
    int pairs = 0;
    for (size_t a = 0; a < members.size(); ++a) {
      for (size_t b = a + 1; b < members.size(); ++b) {
        auto u = data.dense.row(members[a]), v = data.dense.row(members[b]);
        double uv = 0, uu = 0, vv = 0;
        for (size_t j = 0; j < u.size(); ++j) {
          uv += u[j] * v[j];
          uu += u[j] * u[j];
          vv += v[j] * v[j];
        }
        sum += uv / std::sqrt(uu * vv);
        ++pairs;
      }
    }
    total += sum / pairs;
  }
  EXPECT_NEAR(mean_group_cosine(data.dense, grouping), total / grouping.num_groups(), 1e-5);
}

}  // namespace
}  // namespace haste
