// The output layer of the CPU model (DESIGN.md 2, 3, 7): a dense head over the H most frequent
// labels and the group-shared tail over the rest, in MODEL label ids (head labels 0..H-1, then
// tail slots H.., group by group; the last group's padding slots are inert). The loss is BCE with
// logits over both parts; the tail runs group by group (tail_pass.hpp).
//
// Every pass works on a LabelShard: a stretch of head labels and a stretch of tail groups
// (include/haste/shard/label_shards.hpp). all_labels() is the whole layer; the label-sharded
// path (output_shards.hpp) runs one shard per rank, concurrently, each with its own Workspace.
// A shard writes the gradients of its own rows of the parameters only, so shards never race.
#pragma once

#include <cstdint>
#include <haste/group_shared.hpp>
#include <haste/model.hpp>
#include <haste/shard/label_shards.hpp>
#include <haste/sparse.hpp>
#include <span>
#include <vector>

#include "model/tail_pass.hpp"

namespace haste::model {

class OutputLayer {
 public:
  // `d` is the width of h; with private features the head reads h[:, d/2:d] and the tail
  // h[:, 0:d/2], otherwise both read all of h.
  OutputLayer(const ModelShape& shape, int64_t d, bool private_features);

  // Weights with variance 1 / fan-in (head: d_head, tail: k; padding slots zero), each tail
  // group's k features distinct and uniformly random, and every bias at `bias_logits` (one per
  // model label, e.g. the logit of the label's training frequency).
  void initialize(std::span<const float> bias_logits, uint64_t seed);

  // A shard's scratch for forward_backward.
  struct Workspace {
    TailPass tail_pass;
    std::vector<BlockPositive> head_positives;
    std::vector<float> head_dz, tail_dh;
  };

  shard::LabelShard all_labels() const { return {0, H_, 0, tail.shape.G}; }
  // Real (not padding) tail labels in `shard`'s groups.
  int64_t real_tail_labels(const shard::LabelShard& shard) const;

  // Readies the batch h [B, d] for the shards' forward_backward calls: the tail's input (a
  // copy of its columns with private features), shared by all shards and kept for DST.
  void begin_batch(int64_t B, std::span<const float> h);
  // Loss (sum over `shard`'s labels, mean over the batch) of h [B, d] (the begin_batch one)
  // against `targets` (B rows in model label ids), its gradient into the shard's rows of the
  // parameters' gradients (overwritten) and into dh [B, d] (overwritten: the shard's share).
  double forward_backward(const shard::LabelShard& shard, Workspace& work, int64_t B,
                          std::span<const float> h, const CsrMatrix& targets, std::span<float> dh);

  // Logits of h [B, d] for `shard`'s labels: head [B, shard head labels] and tail
  // [B, shard groups * g] (padding slots included).
  void logits(const shard::LabelShard& shard, int64_t B, std::span<const float> h,
              std::vector<float>& head_z, std::vector<float>& tail_z) const;

  int64_t head_labels() const { return H_; }
  int64_t head_width() const { return d_head_; }
  int64_t tail_width() const { return d_tail_; }

  std::vector<float> head_weight, head_bias;    // [H, d_head], [H]
  std::vector<float> dhead_weight, dhead_bias;  // gradients
  GroupSharedParams<float> tail;                // [G*g, k] weights, [G*g] bias, [G, k] indices
  std::vector<float> dtail_weight, dtail_bias;  // gradients

  // The tail's input and logit gradient of the last forward_backward (for DST's regrowth); the
  // gradient is empty unless keep_tail_dz was set for that batch.
  TailBatch last_tail_batch() const;
  bool keep_tail_dz = true;

 private:
  // The tail's input: h itself, or a copy of its first d/2 columns with private features.
  std::span<const float> tail_input(int64_t B, std::span<const float> h,
                                    std::vector<float>& buffer) const;
  // The tail's groups of `shard` as the kernels see them.
  GroupSharedView<float> tail_view(const shard::LabelShard& shard) const;
  double head_forward_backward(const shard::LabelShard& shard, Workspace& work, int64_t B,
                               std::span<const float> h, const CsrMatrix& targets,
                               std::span<float> dh);
  double tail_forward_backward(const shard::LabelShard& shard, Workspace& work, int64_t B,
                               const CsrMatrix& targets, std::span<float> dh);

  int64_t H_, L_tail_, d_, d_head_, head_offset_, d_tail_;
  int64_t last_B_ = 0;
  std::vector<float> tail_h_, tail_dz_;
  std::span<const float> last_tail_h_;
};

}  // namespace haste::model
