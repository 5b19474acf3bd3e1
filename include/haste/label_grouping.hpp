// Label grouping for the sparse tail (DESIGN.md 3 and 6): label vectors (PIFA) and a balanced
// recursive spherical 2-means that cuts the tail labels into groups of exactly g.
//
// Typical use:
//   CsrMatrix vectors = pifa_label_vectors(train.features, train.labels);   // L x F
//   LabelGrouping grouping = group_labels(vectors, tail_labels, g, seed);
//   // group G holds grouping.order[G*g .. G*g+g); the last one may be short by padding()
//
// Determinism: for a given input and seed the result is bit-identical for any thread count.
// Memory: besides the output, O(F) scratch per thread (F = label-vector width), never O(L*F).
#pragma once

#include <cstdint>
#include <haste/sparse.hpp>
#include <span>
#include <vector>

namespace haste {

// PIFA label vectors: row l = normalise(sum of normalise(x_i) over training rows i with label l),
// i.e. the L2-normalised rows of Y^T X_n where X_n is X with L2-normalised rows. A label with
// no positives (or whose sum is zero) gets an empty row. `labels` is N x L and read as a
// pattern (values, if any, are ignored); `features` is N x F. Returns L x F with sorted indices.
// Throws haste::Error on mismatched row counts, out-of-range ids or non-finite feature values.
CsrMatrix pifa_label_vectors(const CsrMatrix& features, const CsrMatrix& labels);
// The same for dense inputs (N x D, e.g. sentence embeddings): returns L x D, all-zero rows for
// labels without positives.
DenseMatrix pifa_label_vectors(const DenseMatrix& features, const CsrMatrix& labels);

// A partition of labels into groups of `group_size`, as one sequence: group G is
// order[G * group_size, (G + 1) * group_size). Every group is full except possibly the last,
// which is short by padding() labels; the caller pads it with inert labels.
struct LabelGrouping {
  int32_t group_size = 1;
  std::vector<int32_t> order;  // label ids (rows of the label-vector matrix), in group order

  int64_t num_labels() const { return static_cast<int64_t>(order.size()); }
  int64_t num_groups() const { return (num_labels() + group_size - 1) / group_size; }
  // Inert labels needed to fill the last group: num_groups() * group_size - num_labels().
  int64_t padding() const { return num_groups() * group_size - num_labels(); }
  // The labels of group `group` (the last one may be shorter than group_size).
  std::span<const int32_t> group(int64_t group) const;
};

// Groups the labels `labels` (row ids of `label_vectors`, distinct; typically the tail labels)
// by balanced recursive spherical 2-means:
//   * a node of n > g labels is split into a left part of ceil(ceil(n / g) / 2) * g labels and a
//     right part of the rest, so that every leaf has exactly g labels except the last one;
//   * each split starts from a random member (seeded from (seed, node id), so subtrees are
//     independent of scheduling) and the member least similar to it as centroids, then
//     alternates: rank members by cos(v, c_left) - cos(v, c_right), give the top n_left to the
//     left, recompute both centroids as normalised sums; it stops when the assignment no longer
//     changes or after `max_iterations` assignments. With `restarts` > 1 it runs that many times
//     from different random members and keeps the split with the highest sum of cosines to the
//     own centroid (better splits, proportionally slower);
//   * recursion stops at nodes of at most g labels; leaves are emitted left to right.
// Rows need not be normalised: cosines are taken. Labels whose vector is empty (all zero, e.g.
// never seen in training) carry no signal for clustering: they are not clustered but appended
// after the clustered labels, in the order given, so they fill the last clustered group and
// then form groups of their own. Throws haste::Error on a bad id, a duplicate id, group_size <
// 1, max_iterations < 1, restarts < 1, non-finite vector values or unsorted sparse rows.
LabelGrouping group_labels(const CsrMatrix& label_vectors, std::span<const int32_t> labels,
                           int group_size, uint64_t seed, int max_iterations = 20,
                           int restarts = 1);
LabelGrouping group_labels(const DenseMatrix& label_vectors, std::span<const int32_t> labels,
                           int group_size, uint64_t seed, int max_iterations = 20,
                           int restarts = 1);
// All rows of `label_vectors`.
LabelGrouping group_labels(const CsrMatrix& label_vectors, int group_size, uint64_t seed,
                           int max_iterations = 20, int restarts = 1);
LabelGrouping group_labels(const DenseMatrix& label_vectors, int group_size, uint64_t seed,
                           int max_iterations = 20, int restarts = 1);

// Cohesion of a grouping: the mean over groups (of 2 or more labels) of the mean pairwise
// cosine similarity of the group's label vectors, empty vectors counting as 0. A random
// grouping of unrelated labels scores near 0; identical labels score 1.
double mean_group_cosine(const CsrMatrix& label_vectors, const LabelGrouping& grouping);
double mean_group_cosine(const DenseMatrix& label_vectors, const LabelGrouping& grouping);

}  // namespace haste
