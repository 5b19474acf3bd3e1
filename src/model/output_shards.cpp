// The output layer over in-process label shards (see output_shards.hpp).
#include "model/output_shards.hpp"

#include <algorithm>
#include <bit>
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

// A multi-process run's candidates: this rank's lists (candidates[rank * B + b]) to every rank,
// the other ranks' lists from them, through one all-gather of 2k floats per row: k scores, then
// k model label ids bit-cast to float. The all-gather only copies bytes (no arithmetic, over TCP
// as over NCCL), so the ids arrive exactly, whatever float they spell (NaN or denormal
// patterns included). A shard with fewer than k labels pads with label -1, dropped on arrival.
void exchange_candidates(shard::Communicator& comm, int64_t B, int k,
                         std::vector<std::vector<int32_t>>& labels,
                         std::vector<std::vector<float>>& scores) {
  const int P = comm.size(), rank = comm.rank();
  const auto row = static_cast<size_t>(2 * k);
  std::vector<float> mine(static_cast<size_t>(B) * row), all(mine.size() * P);
  for (int64_t b = 0; b < B; ++b) {
    float* out = mine.data() + static_cast<size_t>(b) * row;
    const std::vector<int32_t>& ids = labels[rank * B + b];
    const std::vector<float>& values = scores[rank * B + b];
    for (int i = 0; i < k; ++i) {
      const bool real = static_cast<size_t>(i) < ids.size();
      out[i] = real ? values[i] : 0.0f;
      out[k + i] = std::bit_cast<float>(real ? ids[i] : int32_t{-1});
    }
  }
  comm.all_gather(mine, all);
  for (int r = 0; r < P; ++r) {
    if (r == rank) continue;
    for (int64_t b = 0; b < B; ++b) {
      const float* in = all.data() + (static_cast<size_t>(r) * B + b) * row;
      std::vector<int32_t>& ids = labels[r * B + b];
      std::vector<float>& values = scores[r * B + b];
      ids.clear();
      values.clear();
      for (int i = 0; i < k; ++i) {
        const auto id = std::bit_cast<int32_t>(in[k + i]);
        if (id < 0) break;
        ids.push_back(id);
        values.push_back(in[i]);
      }
    }
  }
}

}  // namespace

OutputShards::OutputShards(const OutputLayer& layer, int P)
    : shards_(shard::split_labels(layer.head_labels(), layer.tail.shape.G, P)),
      group_(P),
      workspaces_(P),
      dh_(P) {}

OutputShards::OutputShards(const OutputLayer& layer, shard::Communicator& comm)
    : shards_(shard::split_labels(layer.head_labels(), layer.tail.shape.G, comm.size())),
      process_group_(&comm),
      group_(1),
      workspaces_(1) {}

double OutputShards::rank_forward_backward(shard::Communicator& comm, OutputLayer& layer,
                                           OutputLayer::Workspace& work, int64_t B,
                                           std::span<const float> h, const CsrMatrix& targets,
                                           std::span<float> my_dh) {
  double loss[1] = {layer.forward_backward(shards_[comm.rank()], work, B, h, targets, my_dh)};
  comm.all_reduce(my_dh);
  comm.all_reduce(std::span<double>(loss));
  return loss[0];
}

double OutputShards::forward_backward(OutputLayer& layer, int64_t B, std::span<const float> h,
                                      const CsrMatrix& targets, std::span<float> dh) {
  layer.begin_batch(B, h);
  if (process_group_ != nullptr) {
    return rank_forward_backward(*process_group_, layer, workspaces_[0], B, h, targets, dh);
  }
  for (int r = 1; r < size(); ++r) dh_[r].resize(dh.size());
  double loss = 0;
  group_.run([&](shard::Communicator& comm) {
    const int r = comm.rank();
    // Rank 0 works in the caller's dh, which then holds the sum.
    const std::span<float> my_dh = r == 0 ? dh : std::span<float>(dh_[r]);
    const double sum = rank_forward_backward(comm, layer, workspaces_[r], B, h, targets, my_dh);
    if (r == 0) loss = sum;
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
  auto rank_candidates = [&](int r) {
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
  };
  if (process_group_ != nullptr) {
    rank_candidates(process_group_->rank());
    exchange_candidates(*process_group_, B, k, candidate_labels, candidate_scores);
  } else {
    shard::InProcessGroup group(P);  // a local group: concurrent calls must not share one
    group.run([&](shard::Communicator& comm) { rank_candidates(comm.rank()); });
  }
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
