// Label vectors as a 2-means split sees them: the members of one tree node, centroids dense over
// the node's "positions", and the operations a split needs (accumulate members into centroid
// sums, score a member against both centroids, and cuts of the positions into ranges for
// parallel work). One class for sparse rows, one for dense rows, same interface, so
// balanced_kmeans.cpp is written once.
//
// Two layouts for sparse rows. Narrow (one thread per node): positions are the features the
// node's members use, sorted, found on enter() in O(node nonzeros). Wide (all threads on one big
// node): positions are all F features, so entering costs nothing and the sums of features
// outside the node simply stay 0.
//
// Centroids are interleaved, c[2 * p + side], so scoring a member against both centroids reads
// one cache line per position. Every member is scaled by its 1 / ||v|| on the fly; the inputs
// need not be normalised.
//
// Determinism: accumulate() updates each position with the members in member order, whichever
// range of positions a thread owns, so the sums are bit-identical for any split of the
// positions into ranges, i.e. for any thread count, and in both layouts. Norms are summed per
// block of kNormBlock feature ids, blocks in order: both layouts see the same nonzero terms in
// the same grouping (the extra terms of the wide layout are exact zeros), so the centroids
// agree bit for bit too.
#pragma once

#include <algorithm>
#include <cstdint>
#include <haste/sparse.hpp>
#include <span>
#include <vector>

namespace haste::cluster {

// Member side during a split: left, right, or not yet assigned (the first centroids are built
// from one member each).
enum Side : uint8_t { kLeft = 0, kRight = 1, kUnassigned = 2 };

// Feature ids per block of the norm reduction (see above).
inline constexpr int64_t kNormBlock = 4096;

// Block boundaries in position space for positions with these sorted feature ids: a new block
// starts where the feature id enters a new multiple of kNormBlock.
inline std::vector<int64_t> feature_block_bounds(std::span<const int32_t> sorted_features) {
  std::vector<int64_t> bounds{0};
  for (size_t p = 1; p < sorted_features.size(); ++p) {
    if (sorted_features[p] / kNormBlock != sorted_features[p - 1] / kNormBlock) {
      bounds.push_back(static_cast<int64_t>(p));
    }
  }
  if (!sorted_features.empty()) bounds.push_back(static_cast<int64_t>(sorted_features.size()));
  return bounds;
}

// Cuts [0, weights.size()) into at most `count` consecutive ranges of about equal total weight;
// returns the range boundaries (first 0, last weights.size()).
inline std::vector<int64_t> balanced_ranges(std::span<const int64_t> weights, int64_t count) {
  int64_t total = 0;
  for (int64_t w : weights) total += w;
  std::vector<int64_t> bounds{0};
  int64_t running = 0;
  for (size_t p = 0; p < weights.size(); ++p) {
    running += weights[p];
    // Close a range when it reaches its share of the total.
    int64_t k = static_cast<int64_t>(bounds.size());
    if (k < count && running * count >= total * k && static_cast<int64_t>(p + 1) > bounds.back()) {
      bounds.push_back(static_cast<int64_t>(p + 1));
    }
  }
  if (bounds.back() != static_cast<int64_t>(weights.size())) {
    bounds.push_back(static_cast<int64_t>(weights.size()));
  }
  return bounds;
}

// Rows of a CsrMatrix. A dense map feature -> position (width F, one per splitter) makes
// lookups O(1); in the narrow layout it is reset on leave().
class SparseNodeVectors {
 public:
  // `ranges` <= 1: narrow layout. `ranges` > 1: wide layout, positions cut into about that many
  // ranges of equal work (by each feature's nonzero count over all rows) for accumulate().
  SparseNodeVectors(const CsrMatrix& vectors, std::span<const float> inverse_norm, int64_t ranges)
      : vectors_(&vectors), inverse_norm_(inverse_norm), wide_(ranges > 1) {
    if (!wide_) {
      position_of_.assign(vectors.cols, -1);
      return;
    }
    features_.resize(vectors.cols);
    for (int64_t f = 0; f < vectors.cols; ++f) features_[f] = static_cast<int32_t>(f);
    position_of_ = features_;
    std::vector<int64_t> entries(vectors.cols, 0);
    for (int32_t feature : vectors.indices) {
      if (feature >= 0 && feature < vectors.cols) ++entries[feature];  // others are not grouped
    }
    range_bounds_ = balanced_ranges(entries, ranges);
    block_bounds_ = feature_block_bounds(features_);
  }

  // Starts a node; returns its number of positions.
  int64_t enter(std::span<const int32_t> members) {
    if (wide_) return static_cast<int64_t>(features_.size());
    for (int32_t label : members) {
      for (int32_t feature : vectors_->row_indices(label)) {
        if (position_of_[feature] < 0) {
          position_of_[feature] = 0;
          features_.push_back(feature);
        }
      }
    }
    std::sort(features_.begin(), features_.end());
    const int64_t P = static_cast<int64_t>(features_.size());
    for (int64_t p = 0; p < P; ++p) position_of_[features_[p]] = static_cast<int32_t>(p);
    range_bounds_ = {0, P};
    block_bounds_ = feature_block_bounds(features_);
    return P;
  }

  void leave() {
    if (wide_) return;
    for (int32_t feature : features_) position_of_[feature] = -1;
    features_.clear();
  }

  std::span<const int64_t> range_bounds() const { return range_bounds_; }
  std::span<const int64_t> block_bounds() const { return block_bounds_; }

  // Moves member i from side from[i] to side to[i] in the centroid sums, for the members that
  // changed and the positions in range `range`: sums[2 p + side] gains (or loses) v_i[p] / ||v_i||.
  void accumulate(std::span<const int32_t> members, const uint8_t* from, const uint8_t* to,
                  double* sums, int64_t range) const {
    const int64_t begin = range_bounds_[range], end = range_bounds_[range + 1];
    if (begin == end) return;
    const bool all_positions = begin == 0 && end == static_cast<int64_t>(features_.size());
    for (size_t i = 0; i < members.size(); ++i) {
      if (from[i] == to[i]) continue;
      const int32_t label = members[i];
      const int32_t* indices = vectors_->indices.data() + vectors_->indptr[label];
      const float* values = vectors_->values.data() + vectors_->indptr[label];
      int64_t first = 0, last = vectors_->indptr[label + 1] - vectors_->indptr[label];
      if (!all_positions) {  // the entries whose features fall in this range
        first = std::lower_bound(indices, indices + last, features_[begin]) - indices;
        last = std::upper_bound(indices + first, indices + last, features_[end - 1]) - indices;
      }
      const double scale = inverse_norm_[label];
      if (from[i] != kUnassigned) add(indices, values, first, last, -scale, sums + from[i]);
      if (to[i] != kUnassigned) add(indices, values, first, last, scale, sums + to[i]);
    }
  }

  // cos(v, c_left) - cos(v, c_right) for unit centroids.
  double score(int32_t label, const float* centroids) const {
    const int64_t first = vectors_->indptr[label], last = vectors_->indptr[label + 1];
    const int32_t* indices = vectors_->indices.data();
    const float* values = vectors_->values.data();
    const int32_t* position = position_of_.data();
    float left = 0, right = 0;
    for (int64_t j = first; j < last; ++j) {
      const float* c = centroids + 2 * position[indices[j]];
      left += values[j] * c[0];
      right += values[j] * c[1];
    }
    return (static_cast<double>(left) - right) * inverse_norm_[label];
  }

 private:
  void add(const int32_t* indices, const float* values, int64_t first, int64_t last, double scale,
           double* side_sums) const {
    const int32_t* position = position_of_.data();
    for (int64_t j = first; j < last; ++j) {
      side_sums[2 * position[indices[j]]] += scale * values[j];
    }
  }

  const CsrMatrix* vectors_;
  std::span<const float> inverse_norm_;
  bool wide_;
  std::vector<int32_t> position_of_;  // width F: feature -> position (-1: not in the node)
  std::vector<int32_t> features_;     // position -> feature id, ascending
  std::vector<int64_t> range_bounds_;
  std::vector<int64_t> block_bounds_;
};

// Rows of a DenseMatrix: positions are the D columns in both layouts.
class DenseNodeVectors {
 public:
  DenseNodeVectors(const DenseMatrix& vectors, std::span<const float> inverse_norm, int64_t ranges)
      : vectors_(&vectors), inverse_norm_(inverse_norm) {
    const int64_t D = vectors.cols;
    range_bounds_ = balanced_ranges(std::vector<int64_t>(D, 1), std::max<int64_t>(1, ranges));
    for (int64_t p = 0; p < D; p += kNormBlock) block_bounds_.push_back(p);
    block_bounds_.push_back(D);
  }

  int64_t enter(std::span<const int32_t>) { return vectors_->cols; }
  void leave() {}

  std::span<const int64_t> range_bounds() const { return range_bounds_; }
  std::span<const int64_t> block_bounds() const { return block_bounds_; }
  void accumulate(std::span<const int32_t> members, const uint8_t* from, const uint8_t* to,
                  double* sums, int64_t range) const {
    const int64_t begin = range_bounds_[range], end = range_bounds_[range + 1];
    for (size_t i = 0; i < members.size(); ++i) {
      if (from[i] == to[i]) continue;
      const int32_t label = members[i];
      const float* v = vectors_->row(label).data();
      const double scale = inverse_norm_[label];
      if (from[i] != kUnassigned) add(v, begin, end, -scale, sums + from[i]);
      if (to[i] != kUnassigned) add(v, begin, end, scale, sums + to[i]);
    }
  }

  double score(int32_t label, const float* centroids) const {
    const float* v = vectors_->row(label).data();
    float left = 0, right = 0;
    for (int64_t p = 0; p < vectors_->cols; ++p) {
      left += v[p] * centroids[2 * p];
      right += v[p] * centroids[2 * p + 1];
    }
    return (static_cast<double>(left) - right) * inverse_norm_[label];
  }

 private:
  static void add(const float* v, int64_t begin, int64_t end, double scale, double* side_sums) {
    for (int64_t p = begin; p < end; ++p) side_sums[2 * p] += scale * v[p];
  }

  const DenseMatrix* vectors_;
  std::span<const float> inverse_norm_;
  std::vector<int64_t> range_bounds_;
  std::vector<int64_t> block_bounds_;
};

}  // namespace haste::cluster
