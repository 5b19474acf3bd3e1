// The output layer over in-process label shards (see output_shards.hpp).
#include "model/output_shards.hpp"

#include <algorithm>
#include <utility>

#include "model/top_k_select.hpp"

namespace haste::model {
namespace {

// The k best of P shards' candidate lists (each best first): by score, ties to the lower label.
void merge_candidates(std::span<const std::vector<int32_t>> labels,
                      std::span<const std::vector<float>> scores, size_t k,
                      std::vector<int32_t>& best_labels, std::vector<float>& best_scores) {
  std::vector<std::pair<float, int32_t>> all;
  for (size_t r = 0; r < labels.size(); ++r) {
    for (size_t i = 0; i < labels[r].size(); ++i) all.emplace_back(scores[r][i], labels[r][i]);
  }
  const size_t keep = std::min(k, all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<int64_t>(keep), all.end(),
                    [](const auto& a, const auto& b) {
                      return a.first != b.first ? a.first > b.first : a.second < b.second;
                    });
  best_labels.clear();
  best_scores.clear();
  for (size_t i = 0; i < keep; ++i) {
    best_scores.push_back(all[i].first);
    best_labels.push_back(all[i].second);
  }
}

}  // namespace

OutputShards::OutputShards(const OutputLayer& layer, int P)
    : shards_(shard::split_labels(layer.head_labels(), layer.tail.shape.G, P)),
      group_(P),
      workspaces_(P),
      dh_(P) {}

double OutputShards::forward_backward(OutputLayer& layer, int64_t B, std::span<const float> h,
                                      const CsrMatrix& targets, std::span<float> dh) {
  layer.begin_batch(B, h);
  for (int r = 1; r < size(); ++r) dh_[r].resize(dh.size());
  double loss = 0;
  group_.run([&](shard::Communicator& comm) {
    const int r = comm.rank();
    // Rank 0 works in the caller's dh, which then holds the sum.
    const std::span<float> my_dh = r == 0 ? dh : std::span<float>(dh_[r]);
    double my_loss[1] = {layer.forward_backward(shards_[r], workspaces_[r], B, h, targets, my_dh)};
    comm.all_reduce(my_dh);
    comm.all_reduce(std::span<double>(my_loss));
    if (r == 0) loss = my_loss[0];
  });
  return loss;
}

void OutputShards::top_k(const OutputLayer& layer, int64_t B, std::span<const float> h, int k,
                         std::vector<std::vector<int32_t>>& labels,
                         std::vector<std::vector<float>>& scores) const {
  const int P = size();
  const int64_t g = layer.tail.shape.g;
  // candidates[r * B + b]: rank r's k best of row b.
  std::vector<std::vector<int32_t>> candidate_labels(P * B);
  std::vector<std::vector<float>> candidate_scores(P * B);
  shard::InProcessGroup group(P);  // a local group: concurrent calls must not share one
  group.run([&](shard::Communicator& comm) {
    const int r = comm.rank();
    const shard::LabelShard& s = shards_[r];
    std::vector<float> head_z, tail_z;
    layer.logits(s, B, h, head_z, tail_z);
    const int64_t Hs = s.head_labels(), slots = s.groups() * g, real = layer.real_tail_labels(s);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      TopKSelect select(k);
      select.scan(std::span<const float>(head_z.data() + b * Hs, Hs), s.head_begin);
      select.scan(std::span<const float>(tail_z.data() + b * slots, real),
                  layer.head_labels() + s.group_begin * g);
      select.take(candidate_labels[r * B + b], candidate_scores[r * B + b]);
    }
  });
  if (labels.size() < static_cast<size_t>(B)) labels.resize(B);
  if (scores.size() < static_cast<size_t>(B)) scores.resize(B);
  std::vector<std::vector<int32_t>> row_labels(P);
  std::vector<std::vector<float>> row_scores(P);
  for (int64_t b = 0; b < B; ++b) {
    for (int r = 0; r < P; ++r) {
      row_labels[r] = std::move(candidate_labels[r * B + b]);
      row_scores[r] = std::move(candidate_scores[r * B + b]);
    }
    merge_candidates(row_labels, row_scores, static_cast<size_t>(k), labels[b], scores[b]);
  }
}

}  // namespace haste::model
