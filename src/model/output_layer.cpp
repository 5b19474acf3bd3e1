// Head + tail forward, loss and backward on the CPU (see output_layer.hpp).
#include "model/output_layer.hpp"

#include <algorithm>
#include <haste/error.hpp>

#include "cpu/vector_ops.hpp"
#include "data/random.hpp"
#include "model/blas.hpp"
#include "model/parameter_init.hpp"

namespace haste::model {
namespace {

using blas::Op;

GroupSharedShape tail_shape(const ModelShape& shape, int64_t d_tail) {
  // An empty tail still needs a valid shape for the kernels: k is clamped to d_tail.
  return {d_tail, shape.groups, shape.group_size, std::min(shape.fan_in, d_tail)};
}

// k distinct features of [0, d) drawn uniformly (Floyd's algorithm), sorted.
void random_sorted_features(Rng& rng, int64_t d, std::span<int32_t> out) {
  const auto k = static_cast<int64_t>(out.size());
  int64_t chosen = 0;
  for (int64_t n = d - k; n < d; ++n) {
    auto candidate = static_cast<int32_t>(rng.below(static_cast<uint64_t>(n + 1)));
    bool taken = std::find(out.begin(), out.begin() + chosen, candidate) != out.begin() + chosen;
    out[chosen++] = taken ? static_cast<int32_t>(n) : candidate;
  }
  std::sort(out.begin(), out.end());
}

}  // namespace

OutputLayer::OutputLayer(const ModelShape& shape, int64_t d, bool private_features)
    : tail(tail_shape(shape, private_features ? d / 2 : d)),
      H_(shape.head_labels),
      L_tail_(shape.tail_labels()),
      d_(d),
      d_head_(private_features ? d - d / 2 : d),
      head_offset_(private_features ? d / 2 : 0),
      d_tail_(private_features ? d / 2 : d) {
  check(shape.groups == 0 || shape.fan_in <= d_tail_,
        "model: fan-in k = {} is larger than the tail's width of h ({}); lower 'fan_in'",
        shape.fan_in, d_tail_);
  head_weight.assign(H_ * d_head_, 0.0f);
  dhead_weight.assign(H_ * d_head_, 0.0f);
  head_bias.assign(H_, 0.0f);
  dhead_bias.assign(H_, 0.0f);
  dtail_weight.assign(tail.weights.size(), 0.0f);
  dtail_bias.assign(tail.bias.size(), 0.0f);
}

void OutputLayer::initialize(std::span<const float> bias_logits, uint64_t seed) {
  fill_uniform(head_weight, 1.0 / static_cast<double>(d_head_), hash_key(seed, 0x4ead));
  fill_uniform(tail.weights, 1.0 / static_cast<double>(tail.shape.k), hash_key(seed, 0x7a11));
  const int64_t k = tail.shape.k;
  std::fill(tail.weights.begin() + L_tail_ * k, tail.weights.end(), 0.0f);  // padding
  std::copy_n(bias_logits.begin(), H_, head_bias.begin());
  std::copy_n(bias_logits.begin() + H_, L_tail_, tail.bias.begin());
  for (int64_t group = 0; group < tail.shape.G; ++group) {
    Rng rng(hash_key(seed, 0x1d5, group));
    random_sorted_features(rng, d_tail_, tail.group_indices(group));
  }
}

std::span<const float> OutputLayer::tail_input(int64_t B, std::span<const float> h,
                                               std::vector<float>& buffer) const {
  if (d_tail_ == d_) return h;
  buffer.resize(B * d_tail_);
  for (int64_t b = 0; b < B; ++b) {
    std::copy_n(h.data() + b * d_, d_tail_, buffer.data() + b * d_tail_);
  }
  return buffer;
}

GroupSharedView<float> OutputLayer::tail_view(const shard::LabelShard& shard) const {
  const GroupSharedShape& s = tail.shape;
  const auto G = static_cast<size_t>(shard.groups()), g = static_cast<size_t>(s.g),
             k = static_cast<size_t>(s.k), first = static_cast<size_t>(shard.group_begin);
  return {{s.d, shard.groups(), s.g, s.k},
          std::span<const int32_t>(tail.indices).subspan(first * k, G * k),
          std::span<const float>(tail.weights).subspan(first * g * k, G * g * k),
          std::span<const float>(tail.bias).subspan(first * g, G * g)};
}

int64_t OutputLayer::real_tail_labels(const shard::LabelShard& shard) const {
  const int64_t g = tail.shape.g;
  return std::clamp<int64_t>(L_tail_ - shard.group_begin * g, 0, shard.groups() * g);
}

void OutputLayer::logits(const shard::LabelShard& shard, int64_t B, std::span<const float> h,
                         std::vector<float>& head_z, std::vector<float>& tail_z) const {
  const int64_t Hs = shard.head_labels();
  const float* bias = head_bias.data() + shard.head_begin;
  head_z.resize(B * Hs);
  for (int64_t b = 0; b < B; ++b) std::copy_n(bias, Hs, head_z.data() + b * Hs);
  blas::gemm(Op::none, Op::transpose, B, Hs, d_head_, 1.0f, h.data() + head_offset_, d_,
             head_weight.data() + shard.head_begin * d_head_, d_head_, 1.0f, head_z.data(), Hs);
  tail_z.resize(B * shard.groups() * tail.shape.g);
  if (shard.groups() == 0) return;
  std::vector<float> buffer;
  TailPass::logits(tail_view(shard), B, tail_input(B, h, buffer), tail_z);
}

void OutputLayer::begin_batch(int64_t B, std::span<const float> h) {
  last_B_ = B;
  if (tail.shape.G == 0) return;
  tail_dz_.resize(keep_tail_dz ? B * tail.shape.labels() : 0);
  last_tail_h_ = tail_input(B, h, tail_h_);
}

double OutputLayer::forward_backward(const shard::LabelShard& shard, Workspace& work, int64_t B,
                                     std::span<const float> h, const CsrMatrix& targets,
                                     std::span<float> dh) {
  check(last_B_ == B, "output layer: begin_batch({}) was not called for this batch of {} rows",
        last_B_, B);
  const double loss = head_forward_backward(shard, work, B, h, targets, dh);
  if (shard.groups() == 0) return loss;
  return loss + tail_forward_backward(shard, work, B, targets, dh);
}

double OutputLayer::head_forward_backward(const shard::LabelShard& shard, Workspace& work,
                                          int64_t B, std::span<const float> h,
                                          const CsrMatrix& targets, std::span<float> dh) {
  // z = h_head W^T (the loss adds b), turned in place into dz = (sigmoid(z) - y) / B; then
  // dW = dz^T h_head, db = column sums, dh_head = dz W; all over the shard's head rows.
  const int64_t Hs = shard.head_labels(), first = shard.head_begin;
  std::fill(dh.begin(), dh.end(), 0.0f);  // the shard's share of dh starts here
  if (Hs == 0) return 0.0;                // (BLAS rejects the empty products' strides)
  const float* weight = head_weight.data() + first * d_head_;
  std::vector<float>& dz = work.head_dz;
  dz.resize(B * Hs);
  blas::gemm(Op::none, Op::transpose, B, Hs, d_head_, 1.0f, h.data() + head_offset_, d_, weight,
             d_head_, 0.0f, dz.data(), Hs);
  work.head_positives.clear();
  for (int64_t b = 0; b < B; ++b) {
    for (int32_t label : targets.row_indices(b)) {
      if (label >= first && label < shard.head_end) {
        work.head_positives.push_back(
            {static_cast<int32_t>(b), static_cast<int32_t>(label - first)});
      }
    }
  }
  const float scale = 1.0f / static_cast<float>(B);
  const double loss = bce_block_in_place(dz.data(), B, Hs, Hs, Hs, head_bias.data() + first,
                                         work.head_positives, scale) /
                      static_cast<double>(B);
  blas::gemm(Op::transpose, Op::none, Hs, d_head_, B, 1.0f, dz.data(), Hs, h.data() + head_offset_,
             d_, 0.0f, dhead_weight.data() + first * d_head_, d_head_);
  float* db = dhead_bias.data() + first;
  std::fill_n(db, Hs, 0.0f);
  for (int64_t b = 0; b < B; ++b) cpu::axpy(1.0f, &dz[b * Hs], db, Hs);
  blas::gemm(Op::none, Op::none, B, d_head_, Hs, 1.0f, dz.data(), Hs, weight, d_head_, 1.0f,
             dh.data() + head_offset_, d_);
  return loss;
}

double OutputLayer::tail_forward_backward(const shard::LabelShard& shard, Workspace& work,
                                          int64_t B, const CsrMatrix& targets,
                                          std::span<float> dh) {
  // On the tail's slice of h; padding slots get no loss or gradient. The shard's dz goes to its
  // columns of the whole tail's dz, so DST sees one [B, G*g] matrix however many shards ran.
  const int64_t g = tail.shape.g, k = tail.shape.k, slots = tail.shape.labels();
  const auto first_slot = static_cast<size_t>(shard.group_begin * g);
  const auto shard_slots = static_cast<size_t>(shard.groups() * g);
  std::span<float> tail_dh = dh;
  if (d_tail_ != d_) {
    work.tail_dh.assign(B * d_tail_, 0.0f);
    tail_dh = work.tail_dh;
  }
  const double loss = work.tail_pass.step(
      tail_view(shard), B, last_tail_h_, targets, H_ + static_cast<int64_t>(first_slot),
      real_tail_labels(shard),
      std::span<float>(dtail_weight).subspan(first_slot * k, shard_slots * k),
      std::span<float>(dtail_bias).subspan(first_slot, shard_slots), tail_dh,
      tail_dz_.empty() ? std::span<float>() : std::span<float>(tail_dz_).subspan(first_slot),
      slots);
  if (d_tail_ != d_) {
    for (int64_t b = 0; b < B; ++b) {
      cpu::axpy(1.0f, work.tail_dh.data() + b * d_tail_, dh.data() + b * d_, d_tail_);
    }
  }
  return loss;
}

TailBatch OutputLayer::last_tail_batch() const {
  if (tail.shape.G == 0 || last_B_ == 0) return {};
  return {last_B_, d_tail_, last_tail_h_, tail_dz_};
}

}  // namespace haste::model
