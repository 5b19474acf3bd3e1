// The output layer of the CPU model (DESIGN.md 2, 3, 7): a dense head over the H most frequent
// labels and the group-shared tail over the rest, in MODEL label ids (head labels 0..H-1, then
// tail slots H.., group by group; the last group's padding slots are inert). The loss is BCE with
// logits over both parts; the tail runs group by group (tail_pass.hpp).
#pragma once

#include <cstdint>
#include <haste/group_shared.hpp>
#include <haste/model.hpp>
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

  // Loss (sum over labels, mean over the batch) of h [B, d] against `targets` (B rows in model
  // label ids), its gradient into the parameters' gradients (overwritten) and into dh [B, d]
  // (overwritten).
  double forward_backward(int64_t B, std::span<const float> h, const CsrMatrix& targets,
                          std::span<float> dh);

  // Logits of h [B, d]: head [B, H] and tail [B, G*g] (padding slots included).
  void logits(int64_t B, std::span<const float> h, std::vector<float>& head_z,
              std::vector<float>& tail_z) const;

  int64_t head_labels() const { return H_; }
  int64_t head_width() const { return d_head_; }
  int64_t tail_width() const { return d_tail_; }

  std::vector<float> head_weight, head_bias;    // [H, d_head], [H]
  std::vector<float> dhead_weight, dhead_bias;  // gradients
  GroupSharedParams<float> tail;                // [G*g, k] weights, [G*g] bias, [G, k] indices
  std::vector<float> dtail_weight, dtail_bias;  // gradients

  // The tail's input and logit gradient of the last forward_backward (for DST's regrowth).
  TailBatch last_tail_batch() const;

 private:
  // The tail's input: h itself, or a copy of its first d/2 columns with private features.
  std::span<const float> tail_input(int64_t B, std::span<const float> h,
                                    std::vector<float>& buffer) const;

  int64_t H_, L_tail_, d_, d_head_, head_offset_, d_tail_;
  int64_t last_B_ = 0;
  model::TailPass tail_pass_;
  std::vector<BlockPositive> head_positives_;
  std::vector<float> head_dz_, tail_h_, tail_dz_, tail_dh_;
  std::span<const float> last_tail_h_;
};

}  // namespace haste::model
