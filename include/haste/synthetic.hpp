// Synthetic XMC data at any scale: power-law label frequencies and planted label clusters that
// the features reveal, so that a model can learn it and a benchmark can grow N, F and L freely.
//
// The generative story of row r (see synthetic.cpp for the details):
//   * label ranks follow Zipf(zipf): rank 0 is the most frequent label. Ranks are cut into
//     clusters of `cluster_size` consecutive ranks, and label ids are a seeded permutation of
//     ranks, so ids carry no frequency order;
//   * the row draws one rank from Zipf (a second one with probability 0.3); their clusters are
//     the row's topics, and its remaining labels are drawn from those clusters in proportion to
//     their Zipf weights, so every label's marginal frequency stays Zipf;
//   * features: each cluster owns a few topic features, each label a few features of its own
//     (both derived from ids by a hash, nothing stored), plus noise features drawn from a
//     Zipf-distributed background vocabulary; values are tf-idf-like positive weights and each
//     row is L2-normalised.
// Row r depends only on (seed, r), so rows are generated in parallel and streamed, the output is
// byte-identical for any thread count, and memory stays O(cluster size) whatever L is.
#pragma once

#include <haste/dataset.hpp>

#include <cstdint>
#include <filesystem>
#include <vector>

namespace haste {

class Rng;

struct SynthConfig {
  int64_t rows = 1000;       // N
  int64_t features = 10000;  // F
  int64_t labels = 1000;     // L
  uint64_t seed = 1;
  double zipf = 1.1;             // exponent of the label-frequency power law
  double labels_per_row = 5;     // mean, at least 1 (every row has a label)
  double features_per_row = 40;  // mean number of nonzero features
  int64_t cluster_size = 32;     // labels per planted cluster
  // The rows generated are rows [first_row, first_row + rows) of the seed's endless stream: a
  // test set is the stretch after the training rows (same clusters, fresh rows).
  int64_t first_row = 0;
};

// Throws haste::Error naming the bad setting.
void validate(const SynthConfig& config);

// One generated row: sorted label ids, sorted feature ids and their values (unit L2 norm,
// values rounded to 4 significant digits).
struct SynthRow {
  std::vector<int32_t> labels;
  std::vector<int32_t> feature_indices;
  std::vector<float> feature_values;
};

// Generates any row on demand; cheap to construct, safe to share between threads.
class SynthGenerator {
 public:
  explicit SynthGenerator(const SynthConfig& config);

  // Row `row` of the stream (an absolute index; config.first_row is not added). `out` is
  // overwritten, and reusing it across calls avoids allocations.
  void generate(int64_t row, SynthRow& out) const;

  const SynthConfig& config() const { return config_; }

 private:
  // Label ranks of one row and the clusters they came from.
  void draw_labels(Rng& rng, std::vector<int64_t>& ranks, std::vector<int64_t>& clusters) const;
  void draw_features(Rng& rng, const std::vector<int64_t>& clusters,
                     const std::vector<int64_t>& ranks, SynthRow& out) const;

  SynthConfig config_;
  uint64_t label_multiplier_;  // rank -> id permutation: id = (a * rank + b) mod L
  uint64_t label_offset_;
  uint64_t feature_multiplier_;  // the same for background-feature ranks
  uint64_t feature_offset_;
};

// The whole data set in memory (for tests and small experiments).
Dataset make_synthetic(const SynthConfig& config);

// Streams the data set to `file` in the single-file XC format, compressed by extension
// (.xz, .gz, .bz2), written atomically. Memory is bounded by a block of rows.
void write_synthetic(const SynthConfig& config, const std::filesystem::path& file,
                     bool show_progress = true);

}  // namespace haste
