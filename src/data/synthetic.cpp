// Synthetic data generator: the generative story is in include/haste/synthetic.hpp; the
// constants below fix its proportions.
#include <haste/synthetic.hpp>

#include <haste/error.hpp>
#include <haste/progress.hpp>

#include "data/random.hpp"
#include "data/text_io.hpp"
#include "data/xc_format.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <future>
#include <limits>
#include <memory>
#include <numeric>
#include <string>
#include <utility>

namespace haste {
namespace {

// Independent random streams, one per purpose, all derived from the seed.
enum Stream : uint64_t {
  kRowStream = 1,
  kTopicFeatureStream = 2,
  kLabelFeatureStream = 3,
  kPermutationStream = 4,
};

constexpr double kSecondClusterProbability = 0.3;
// Each topic feature of a row's clusters shows up with this probability, so rows of a cluster
// share most, not all, of its topic.
constexpr double kTopicFeatureProbability = 0.75;
// Per-label features make single labels, not only clusters, predictable.
constexpr int kFeaturesPerLabel = 3;
constexpr double kLabelFeatureProbability = 0.5;
// Background words: a few are everywhere (stop-word-like, low weight), most are rare.
constexpr double kBackgroundZipf = 1.0;
// A cluster's topic has about a quarter of a row's features.
constexpr double kTopicShareOfRow = 0.25;
// Values keep 4 significant digits, as the XC repository's files and debdeps do: files shrink by
// about 40% (and compress faster), and a written file still reloads to exactly the generated
// floats, because such a value prints as those 4 digits.
constexpr int kValueDigits = 4;
// Rows per parallel work item; large enough to amortise scheduling, small enough to balance.
constexpr int64_t kBlockRows = 1024;

// A seeded bijection on [0, n): x -> (a x + b) mod n with gcd(a, n) = 1. It scatters ranks over
// ids so that ids carry no frequency order, in O(1) memory.
std::pair<uint64_t, uint64_t> make_permutation(uint64_t seed, uint64_t purpose, uint64_t n) {
  uint64_t a = hash_key(seed, kPermutationStream, purpose, 0) % n;
  if (a == 0) a = 1;
  while (std::gcd(a, n) != 1) a = a + 1 < n ? a + 1 : 1;
  uint64_t b = hash_key(seed, kPermutationStream, purpose, 1) % n;
  return {a, b};
}

int32_t permute(uint64_t x, uint64_t a, uint64_t b, uint64_t n) {
  // a, x < n <= 2^31, so a * x fits in 64 bits.
  return static_cast<int32_t>((a * x + b) % n);
}

float round_to_digits(double x, int digits) {
  double scale = std::pow(10.0, digits - 1 - static_cast<int>(std::floor(std::log10(x))));
  return static_cast<float>(std::round(x * scale) / scale);
}

int64_t topic_features_per_cluster(const SynthConfig& config) {
  return std::max<int64_t>(1, std::llround(config.features_per_row * kTopicShareOfRow));
}

}  // namespace

void validate(const SynthConfig& config) {
  constexpr int64_t kMaxId = std::numeric_limits<int32_t>::max();
  check(config.rows >= 0, "synthetic data: rows must be >= 0 (got {})", config.rows);
  check(config.features >= 1 && config.features <= kMaxId,
        "synthetic data: features must be in [1, {}] (got {})", kMaxId, config.features);
  check(config.labels >= 1 && config.labels <= kMaxId,
        "synthetic data: labels must be in [1, {}] (got {})", kMaxId, config.labels);
  check(config.zipf > 0 && std::isfinite(config.zipf),
        "synthetic data: the Zipf exponent must be > 0 (got {})", config.zipf);
  check(config.labels_per_row >= 1 && std::isfinite(config.labels_per_row),
        "synthetic data: labels per row must be >= 1 (got {})", config.labels_per_row);
  check(config.features_per_row >= 1 && std::isfinite(config.features_per_row),
        "synthetic data: features per row must be >= 1 (got {})", config.features_per_row);
  check(config.cluster_size >= 1, "synthetic data: cluster size must be >= 1 (got {})",
        config.cluster_size);
  check(config.first_row >= 0, "synthetic data: first row must be >= 0 (got {})", config.first_row);
}

SynthGenerator::SynthGenerator(const SynthConfig& config) : config_(config) {
  validate(config_);
  config_.cluster_size = std::min(config_.cluster_size, config_.labels);
  std::tie(label_multiplier_, label_offset_) =
      make_permutation(config_.seed, 0, static_cast<uint64_t>(config_.labels));
  std::tie(feature_multiplier_, feature_offset_) =
      make_permutation(config_.seed, 1, static_cast<uint64_t>(config_.features));
}

void SynthGenerator::generate(int64_t row, SynthRow& out) const {
  Rng rng(hash_key(config_.seed, kRowStream, static_cast<uint64_t>(row)));
  std::vector<int64_t> ranks, clusters;
  draw_labels(rng, ranks, clusters);

  out.labels.clear();
  for (int64_t rank : ranks) {
    out.labels.push_back(permute(static_cast<uint64_t>(rank), label_multiplier_, label_offset_,
                                 static_cast<uint64_t>(config_.labels)));
  }
  std::sort(out.labels.begin(), out.labels.end());
  draw_features(rng, clusters, ranks, out);
}

// Clusters are runs of `cluster_size` consecutive ranks. Drawing a rank from Zipf and taking its
// cluster picks clusters in proportion to their total Zipf mass, and the further labels are drawn
// within the cluster in proportion to their own Zipf weights, so each draw's marginal is Zipf.
void SynthGenerator::draw_labels(Rng& rng, std::vector<int64_t>& ranks,
                                 std::vector<int64_t>& clusters) const {
  const int64_t cluster_size = config_.cluster_size;
  ZipfSampler zipf(config_.labels, config_.zipf);
  int64_t first = zipf(rng);
  ranks.assign(1, first);
  clusters.assign(1, first / cluster_size);
  if (rng.bernoulli(kSecondClusterProbability)) {
    int64_t second = zipf(rng);
    if (second != first) ranks.push_back(second);
    if (second / cluster_size != clusters[0]) clusters.push_back(second / cluster_size);
  }

  const int64_t wanted = 1 + rng.poisson(config_.labels_per_row - 1);
  if (static_cast<int64_t>(ranks.size()) >= wanted) return;

  // Sequential weighted sampling without replacement from the clusters' other labels.
  std::vector<int64_t> candidates;
  std::vector<double> weights;
  for (int64_t cluster : clusters) {
    int64_t end = std::min(config_.labels, (cluster + 1) * cluster_size);
    for (int64_t rank = cluster * cluster_size; rank < end; ++rank) {
      if (std::find(ranks.begin(), ranks.end(), rank) != ranks.end()) continue;
      candidates.push_back(rank);
      weights.push_back(std::pow(static_cast<double>(rank + 1), -config_.zipf));
    }
  }
  double total = std::accumulate(weights.begin(), weights.end(), 0.0);
  while (static_cast<int64_t>(ranks.size()) < wanted && !candidates.empty()) {
    double target = rng.uniform() * total;
    size_t pick = 0;
    for (double acc = weights[0]; acc <= target && pick + 1 < weights.size();) {
      acc += weights[++pick];
    }
    ranks.push_back(candidates[pick]);
    total -= weights[pick];
    candidates[pick] = candidates.back();
    candidates.pop_back();
    weights[pick] = weights.back();
    weights.pop_back();
  }
}

// tf-idf-like values: a feature's weight is a random "term frequency" times a rarity that grows
// like an idf: planted features are as rare as words get, background words by their rank.
void SynthGenerator::draw_features(Rng& rng, const std::vector<int64_t>& clusters,
                                   const std::vector<int64_t>& ranks, SynthRow& out) const {
  const uint64_t num_features = static_cast<uint64_t>(config_.features);
  const double planted_rarity = std::log(2.0 + static_cast<double>(config_.features));
  std::vector<std::pair<int32_t, double>> entries;

  auto add_planted = [&](uint64_t stream, uint64_t owner, int64_t count, double probability) {
    for (int64_t j = 0; j < count; ++j) {
      if (!rng.bernoulli(probability)) continue;
      auto feature = static_cast<int32_t>(
          hash_key(config_.seed, stream, owner, static_cast<uint64_t>(j)) % num_features);
      entries.emplace_back(feature, rng.uniform(0.5, 1.5) * planted_rarity);
    }
  };
  const int64_t topic_size = topic_features_per_cluster(config_);
  for (int64_t cluster : clusters) {
    add_planted(kTopicFeatureStream, static_cast<uint64_t>(cluster), topic_size,
                kTopicFeatureProbability);
  }
  for (int64_t rank : ranks) {
    add_planted(kLabelFeatureStream, static_cast<uint64_t>(rank), kFeaturesPerLabel,
                kLabelFeatureProbability);
  }

  // Background words fill the row up to its drawn number of distinct features; a word drawn
  // again adds to its weight, as a repeated word does. The attempts are capped for tiny F.
  const int64_t wanted =
      std::clamp<int64_t>(rng.poisson(config_.features_per_row), 1, config_.features);
  auto distinct = [&entries] {
    int64_t count = 0;
    for (size_t i = 0; i < entries.size(); ++i) {
      bool seen = false;
      for (size_t j = 0; j < i && !seen; ++j) seen = entries[j].first == entries[i].first;
      count += !seen;
    }
    return count;
  };
  ZipfSampler background(config_.features, kBackgroundZipf);
  int64_t have = distinct();
  for (int64_t attempt = 0; have < wanted && attempt < 20 * wanted; ++attempt) {
    int64_t rank = background(rng);
    int32_t feature =
        permute(static_cast<uint64_t>(rank), feature_multiplier_, feature_offset_, num_features);
    bool seen = std::any_of(entries.begin(), entries.end(),
                            [feature](const auto& entry) { return entry.first == feature; });
    entries.emplace_back(feature,
                         rng.uniform(0.5, 1.5) * std::log(2.0 + static_cast<double>(rank)));
    have += !seen;
  }

  // Merge repeats, then give the row unit L2 norm (up to the rounding of values).
  std::sort(entries.begin(), entries.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });
  out.feature_indices.clear();
  out.feature_values.clear();
  std::vector<double> summed;
  for (const auto& [feature, weight] : entries) {
    if (!out.feature_indices.empty() && out.feature_indices.back() == feature) {
      summed.back() += weight;
    } else {
      out.feature_indices.push_back(feature);
      summed.push_back(weight);
    }
  }
  double norm_squared = 0;
  for (double w : summed) norm_squared += w * w;
  const double inverse_norm = 1.0 / std::sqrt(norm_squared);
  for (double w : summed) {
    out.feature_values.push_back(round_to_digits(w * inverse_norm, kValueDigits));
  }
}

namespace {

// Rows [begin, end) generated in parallel, handed to `consume(block, row)` in row order within
// each block of kBlockRows; blocks are independent, so `consume` sees one block per thread.
template <typename Consume>
void generate_blocks(const SynthGenerator& generator, int64_t begin, int64_t end,
                     Consume&& consume) {
  const int64_t blocks = (end - begin + kBlockRows - 1) / kBlockRows;
#pragma omp parallel
  {
    SynthRow row;
#pragma omp for schedule(dynamic)
    for (int64_t block = 0; block < blocks; ++block) {
      int64_t first = begin + block * kBlockRows;
      int64_t last = std::min(end, first + kBlockRows);
      for (int64_t r = first; r < last; ++r) {
        generator.generate(r, row);
        consume(block, row);
      }
    }
  }
}

}  // namespace

Dataset make_synthetic(const SynthConfig& config) {
  SynthGenerator generator(config);
  const int64_t blocks = (config.rows + kBlockRows - 1) / kBlockRows;
  std::vector<CsrMatrix> block_features(static_cast<size_t>(blocks));
  std::vector<CsrMatrix> block_labels(static_cast<size_t>(blocks));
  generate_blocks(generator, config.first_row, config.first_row + config.rows,
                  [&](int64_t block, const SynthRow& row) {
                    block_features[block].append_row(row.feature_indices, row.feature_values);
                    block_labels[block].append_row(row.labels, {});
                  });

  Dataset data;
  data.features.cols = config.features;
  data.labels.cols = config.labels;
  auto append_block = [](CsrMatrix& whole, const CsrMatrix& part) {
    for (int64_t r = 0; r < part.rows; ++r) {
      whole.append_row(part.row_indices(r),
                       part.values.empty() ? std::span<const float>{} : part.row_values(r));
    }
  };
  for (int64_t block = 0; block < blocks; ++block) {
    append_block(data.features, block_features[block]);
    append_block(data.labels, block_labels[block]);
    block_features[block] = {};
    block_labels[block] = {};
  }
  return data;
}

void write_synthetic(const SynthConfig& config, const std::filesystem::path& file,
                     bool show_progress) {
  SynthGenerator generator(config);
  AtomicOutput output(file);
  std::string header;
  append_xc_header(header, config.rows, config.features, config.labels);
  output.write(header);

  // Generate one batch of blocks in parallel while the previous batch is written (compression
  // is single-threaded and usually the slower side).
  const int64_t batch_rows = kBlockRows * 4 * std::max(1, omp_get_max_threads());
  Progress progress("synth " + file.filename().string(), show_progress);
  std::future<void> writing;
  for (int64_t done = 0; done < config.rows;) {
    int64_t count = std::min(batch_rows, config.rows - done);
    auto texts = std::make_shared<std::vector<std::string>>((count + kBlockRows - 1) / kBlockRows);
    int64_t begin = config.first_row + done;
    generate_blocks(generator, begin, begin + count, [&](int64_t block, const SynthRow& row) {
      append_xc_row((*texts)[block], row.labels, row.feature_indices, row.feature_values);
    });
    if (writing.valid()) writing.get();
    writing = std::async(std::launch::async, [&output, texts] {
      for (const std::string& text : *texts) output.write(text);
    });
    done += count;
    progress.update(static_cast<double>(done) / static_cast<double>(config.rows), done, "rows");
  }
  if (writing.valid()) writing.get();
  output.commit();
  progress.finish();
}

}  // namespace haste
