// Balanced recursive spherical 2-means (the algorithm is described in label_grouping.hpp).
//
// The tree is built level by level on one array of label ids: a node is a contiguous range of
// it, and a split reorders its range so that the left child comes first. When every node is a
// leaf, the array is the leaves left to right, i.e. the groups in order.
//
// Parallelism, chosen per level: while a level has fewer nodes than threads, its large nodes are
// "wide": split one at a time with every thread working inside the split (scores per member,
// centroid sums per range of features, norms per block). The other nodes are "narrow": split in
// parallel, one thread each. Both ways compute the same numbers in the same order (see
// node_vectors.hpp), and each node draws its random start from (seed, node id), so the result
// does not depend on the thread count.
//
// Cost: each iteration of a split scores every member once (O(nonzeros of the node)); centroid
// sums are updated only for members that changed side. A level of the tree costs about
// (iterations + 2) passes over all label vectors; there are log2(L / g) levels.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <haste/error.hpp>
#include <haste/label_grouping.hpp>
#include <limits>
#include <memory>
#include <numeric>
#include <vector>

#include "cluster/node_vectors.hpp"
#include "data/random.hpp"

namespace haste {
namespace {

using cluster::kLeft;
using cluster::kRight;
using cluster::kUnassigned;

// Below this many labels a node is never split by all threads together: the parallel loops
// would cost more than they save.
constexpr int64_t kMinWideNode = 2048;
// Ranges of positions per thread in a wide split, so that uneven ranges still balance.
constexpr int64_t kRangesPerThread = 4;

// Runs body(i) for i in [0, n), on all threads when `parallel`.
template <typename Body>
void for_each_index(int64_t n, bool parallel, int64_t chunk, Body body) {
  if (parallel) {
#pragma omp parallel for schedule(dynamic, chunk)
    for (int64_t i = 0; i < n; ++i) body(i);
  } else {
    for (int64_t i = 0; i < n; ++i) body(i);
  }
}

// Labels in the left child of a node of n > g labels: half of its groups, rounded up, so that
// only the rightmost leaf of the whole tree can be short.
int64_t left_size(int64_t n, int64_t g) {
  const int64_t groups = (n + g - 1) / g;
  return (groups + 1) / 2 * g;
}

// One 2-means split. Holds the scratch of one thread (reused across nodes).
//
// Centroid sums are updated incrementally: each update adds (and subtracts) only the members
// whose side changed since the last one, so after the first full pass an iteration costs one
// scoring pass plus the few members that moved.
template <typename NodeVectors>
class NodeSplitter {
 public:
  NodeSplitter(NodeVectors vectors, int max_iterations, int restarts)
      : vectors_(std::move(vectors)), max_iterations_(max_iterations), restarts_(restarts) {}

  // Reorders `members` so that the first `left` of them form the left child.
  void split(std::span<int32_t> members, int64_t left, uint64_t node_seed, bool parallel) {
    const int64_t n = static_cast<int64_t>(members.size());
    positions_ = vectors_.enter(members);
    Rng rng(node_seed);
    double best_objective = -1;
    for (int restart = 0; restart < restarts_; ++restart) {
      const double objective = run_2means(members, left, rng, parallel);
      if (objective > best_objective) {
        best_objective = objective;
        best_side_ = target_;
      }
    }
    // Stable partition: left members first, each side in its previous order.
    buffer_.clear();
    for (uint8_t side : {kLeft, kRight}) {
      for (int64_t i = 0; i < n; ++i) {
        if (best_side_[i] == side) buffer_.push_back(members[i]);
      }
    }
    std::copy(buffer_.begin(), buffer_.end(), members.begin());
    vectors_.leave();
  }

 private:
  // One run from a fresh start; leaves its assignment in target_ and returns its objective,
  // the sum over members of the cosine to their own centroid (= |sum left| + |sum right|).
  double run_2means(std::span<const int32_t> members, int64_t left, Rng& rng, bool parallel) {
    const int64_t n = static_cast<int64_t>(members.size());
    applied_.assign(n, kUnassigned);
    target_.assign(n, kUnassigned);
    sums_.assign(2 * positions_, 0.0);

    // Start: a random member on the left, and on the right the member least similar to it
    // (ties to the lowest index), so that the two seeds rarely share a cluster.
    const int64_t first = static_cast<int64_t>(rng.below(n));
    target_[first] = kLeft;
    update_centroids(members, parallel);
    score_members(members, parallel);  // = cos(v, first): the right centroid is still zero
    int64_t second = first == 0 ? 1 : 0;
    for (int64_t i = 0; i < n; ++i) {
      if (i != first && scores_[i] < scores_[second]) second = i;
    }
    target_[second] = kRight;

    for (int iteration = 0; iteration < max_iterations_; ++iteration) {
      update_centroids(members, parallel);
      score_members(members, parallel);
      assign(left);
      if (target_ == applied_) break;
    }
    return update_centroids(members, parallel);
  }

  // Brings the centroid sums from the applied_ to the target_ assignment, then renormalises
  // the centroids. Returns |sum left| + |sum right|.
  double update_centroids(std::span<const int32_t> members, bool parallel) {
    std::span<const int64_t> ranges = vectors_.range_bounds();
    for_each_index(static_cast<int64_t>(ranges.size()) - 1, parallel, 1, [&](int64_t range) {
      vectors_.accumulate(members, applied_.data(), target_.data(), sums_.data(), range);
    });
    applied_ = target_;

    // Squared norms: per block, then the blocks in order (see node_vectors.hpp for why).
    std::span<const int64_t> blocks = vectors_.block_bounds();
    const int64_t num_blocks = static_cast<int64_t>(blocks.size()) - 1;
    block_squares_.assign(2 * num_blocks, 0.0);
    for_each_index(num_blocks, parallel, 1, [&](int64_t block) {
      for (int64_t p = 2 * blocks[block]; p < 2 * blocks[block + 1]; ++p) {
        block_squares_[2 * block + (p & 1)] += sums_[p] * sums_[p];
      }
    });
    double squares[2] = {0, 0};
    for (int64_t b = 0; b < 2 * num_blocks; ++b) squares[b & 1] += block_squares_[b];
    const double norm[2] = {std::sqrt(squares[0]), std::sqrt(squares[1])};
    const double scale[2] = {norm[0] > 0 ? 1 / norm[0] : 0.0, norm[1] > 0 ? 1 / norm[1] : 0.0};
    centroids_.resize(2 * positions_);
    for_each_index(num_blocks, parallel, 1, [&](int64_t block) {
      for (int64_t p = 2 * blocks[block]; p < 2 * blocks[block + 1]; ++p) {
        centroids_[p] = static_cast<float>(sums_[p] * scale[p & 1]);
      }
    });
    return norm[0] + norm[1];
  }

  // scores_[i] = cos(v_i, c_left) - cos(v_i, c_right).
  void score_members(std::span<const int32_t> members, bool parallel) {
    scores_.resize(members.size());
    for_each_index(static_cast<int64_t>(members.size()), parallel, 1024,
                   [&](int64_t i) { scores_[i] = vectors_.score(members[i], centroids_.data()); });
  }

  // Balanced assignment: the `left` members that lean most to the left centroid go left. Ties
  // are broken by member index, so the result is a function of the scores alone.
  void assign(int64_t left) {
    const int64_t n = static_cast<int64_t>(scores_.size());
    ranking_.resize(n);
    std::iota(ranking_.begin(), ranking_.end(), 0);
    std::nth_element(ranking_.begin(), ranking_.begin() + left, ranking_.end(),
                     [&](int64_t a, int64_t b) {
                       return scores_[a] > scores_[b] || (scores_[a] == scores_[b] && a < b);
                     });
    for (int64_t j = 0; j < n; ++j) target_[ranking_[j]] = j < left ? kLeft : kRight;
  }

  NodeVectors vectors_;
  int max_iterations_;
  int restarts_;
  int64_t positions_ = 0;
  std::vector<uint8_t> applied_;       // the assignment the sums hold
  std::vector<uint8_t> target_;        // the newest assignment
  std::vector<uint8_t> best_side_;     // the best assignment over restarts
  std::vector<double> sums_;           // [positions, 2]
  std::vector<double> block_squares_;  // [norm blocks, 2]
  std::vector<float> centroids_;       // [positions, 2], unit columns
  std::vector<double> scores_;
  std::vector<int64_t> ranking_;
  std::vector<int32_t> buffer_;
};

// Splits `order` recursively until every node has at most g labels (see the file comment).
template <typename NodeVectors, typename MakeNodeVectors>
void split_recursively(std::span<int32_t> order, int64_t g, uint64_t seed, int max_iterations,
                       int restarts, MakeNodeVectors make_node_vectors) {
  struct Node {
    int64_t begin, end;
    uint64_t id;  // heap numbering: root 1, children 2 id and 2 id + 1
    int64_t size() const { return end - begin; }
  };
  using Splitter = NodeSplitter<NodeVectors>;
  const int threads = omp_get_max_threads();
  // One narrow splitter per thread and one wide one, made when first needed.
  std::vector<std::unique_ptr<Splitter>> narrow_splitters(threads);
  std::unique_ptr<Splitter> wide_splitter;
  auto narrow_splitter = [&](int thread) -> Splitter& {
    if (!narrow_splitters[thread]) {
      narrow_splitters[thread] =
          std::make_unique<Splitter>(make_node_vectors(1), max_iterations, restarts);
    }
    return *narrow_splitters[thread];
  };
  auto wide = [&]() -> Splitter& {
    if (!wide_splitter) {
      wide_splitter = std::make_unique<Splitter>(make_node_vectors(kRangesPerThread * threads),
                                                 max_iterations, restarts);
    }
    return *wide_splitter;
  };
  auto split = [&](const Node& node, Splitter& worker, bool parallel) {
    worker.split(order.subspan(node.begin, node.size()), left_size(node.size(), g),
                 hash_key(seed, node.id), parallel);
  };

  std::vector<Node> level;
  const int64_t n = static_cast<int64_t>(order.size());
  if (n > g) level.push_back({0, n, 1});
  while (!level.empty()) {
    const bool few_nodes = threads > 1 && static_cast<int64_t>(level.size()) < threads;
    std::vector<Node> narrow;
    for (const Node& node : level) {
      if (few_nodes && node.size() >= kMinWideNode) {
        split(node, wide(), /*parallel=*/true);
      } else {
        narrow.push_back(node);
      }
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t i = 0; i < narrow.size(); ++i) {
      split(narrow[i], narrow_splitter(omp_get_thread_num()), /*parallel=*/false);
    }

    std::vector<Node> next;
    for (const Node& node : level) {
      const int64_t middle = node.begin + left_size(node.size(), g);
      for (Node child :
           {Node{node.begin, middle, 2 * node.id}, Node{middle, node.end, 2 * node.id + 1}}) {
        if (child.size() > g) next.push_back(child);
      }
    }
    level.swap(next);
  }
}

// 1 / ||row|| for the rows in `labels` (0 for an all-zero row; other rows stay 0). Checks the
// ids (in range, distinct) and that the values are finite.
template <typename RowSquares>
std::vector<float> inverse_norms(int64_t rows, std::span<const int32_t> labels,
                                 RowSquares row_squares) {
  std::vector<uint8_t> seen(rows, 0);
  for (int32_t label : labels) {
    check(label >= 0 && label < rows,
          "label grouping: label id {} is outside the {} rows of the label-vector matrix", label,
          rows);
    check(!seen[label], "label grouping: label id {} is listed twice", label);
    seen[label] = 1;
  }
  std::vector<float> inverse(rows, 0.0f);
  const int64_t n = static_cast<int64_t>(labels.size());
  int64_t first_bad = n;
#pragma omp parallel for schedule(static) reduction(min : first_bad)
  for (int64_t i = 0; i < n; ++i) {
    const double squares = row_squares(labels[i]);
    if (!std::isfinite(squares)) first_bad = std::min(first_bad, i);
    inverse[labels[i]] =
        std::isfinite(squares) && squares > 0 ? static_cast<float>(1 / std::sqrt(squares)) : 0.0f;
  }
  check(first_bad == n,
        "label grouping: the vector of label {} has a non-finite value, or indices out of range "
        "or out of order",
        first_bad < n ? labels[first_bad] : -1);
  return inverse;
}

template <typename NodeVectors, typename Matrix, typename RowSquares>
LabelGrouping group_labels_with(const Matrix& vectors, std::span<const int32_t> labels,
                                int group_size, uint64_t seed, int max_iterations, int restarts,
                                RowSquares row_squares) {
  check(group_size >= 1, "label grouping: the group size must be >= 1 (got {})", group_size);
  check(max_iterations >= 1, "label grouping: max_iterations must be >= 1 (got {})",
        max_iterations);
  check(restarts >= 1, "label grouping: restarts must be >= 1 (got {})", restarts);
  const std::vector<float> inverse_norm = inverse_norms(vectors.rows, labels, row_squares);

  // Labels with a vector are clustered; empty ones follow them (see label_grouping.hpp).
  LabelGrouping grouping;
  grouping.group_size = group_size;
  grouping.order.reserve(labels.size());
  for (int32_t label : labels) {
    if (inverse_norm[label] > 0) grouping.order.push_back(label);
  }
  const size_t clustered = grouping.order.size();
  for (int32_t label : labels) {
    if (inverse_norm[label] == 0) grouping.order.push_back(label);
  }

  split_recursively<NodeVectors>(
      std::span<int32_t>(grouping.order.data(), clustered), group_size, seed, max_iterations,
      restarts, [&](int64_t ranges) { return NodeVectors(vectors, inverse_norm, ranges); });
  return grouping;
}

std::vector<int32_t> all_rows(int64_t rows) {
  check(rows <= std::numeric_limits<int32_t>::max(),
        "label grouping: {} labels exceed the int32 label ids", rows);
  std::vector<int32_t> ids(rows);
  std::iota(ids.begin(), ids.end(), 0);
  return ids;
}

}  // namespace

std::span<const int32_t> LabelGrouping::group(int64_t group) const {
  check(group >= 0 && group < num_groups(), "label grouping: group {} is outside [0, {})", group,
        num_groups());
  const int64_t begin = group * group_size;
  const int64_t end = std::min(num_labels(), begin + group_size);
  return {order.data() + begin, static_cast<size_t>(end - begin)};
}

LabelGrouping group_labels(const CsrMatrix& label_vectors, std::span<const int32_t> labels,
                           int group_size, uint64_t seed, int max_iterations, int restarts) {
  check(label_vectors.has_values(), "label grouping: the label-vector matrix has no values");
  // NaN flags a row whose indices are out of range or not strictly increasing.
  auto row_squares = [&](int32_t label) {
    int64_t previous = -1;
    for (int32_t feature : label_vectors.row_indices(label)) {
      if (feature <= previous || feature >= label_vectors.cols) {
        return std::numeric_limits<double>::quiet_NaN();
      }
      previous = feature;
    }
    double squares = 0;
    for (float value : label_vectors.row_values(label)) squares += double(value) * value;
    return squares;
  };
  return group_labels_with<cluster::SparseNodeVectors>(label_vectors, labels, group_size, seed,
                                                       max_iterations, restarts, row_squares);
}

LabelGrouping group_labels(const DenseMatrix& label_vectors, std::span<const int32_t> labels,
                           int group_size, uint64_t seed, int max_iterations, int restarts) {
  auto row_squares = [&](int32_t label) {
    double squares = 0;
    for (float value : label_vectors.row(label)) squares += double(value) * value;
    return squares;
  };
  return group_labels_with<cluster::DenseNodeVectors>(label_vectors, labels, group_size, seed,
                                                      max_iterations, restarts, row_squares);
}

LabelGrouping group_labels(const CsrMatrix& label_vectors, int group_size, uint64_t seed,
                           int max_iterations, int restarts) {
  return group_labels(label_vectors, all_rows(label_vectors.rows), group_size, seed, max_iterations,
                      restarts);
}

LabelGrouping group_labels(const DenseMatrix& label_vectors, int group_size, uint64_t seed,
                           int max_iterations, int restarts) {
  return group_labels(label_vectors, all_rows(label_vectors.rows), group_size, seed, max_iterations,
                      restarts);
}

}  // namespace haste
