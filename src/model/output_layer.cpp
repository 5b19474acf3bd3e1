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

void OutputLayer::logits(int64_t B, std::span<const float> h, std::vector<float>& head_z,
                         std::vector<float>& tail_z) const {
  head_z.resize(B * H_);
  for (int64_t b = 0; b < B; ++b) std::copy(head_bias.begin(), head_bias.end(), &head_z[b * H_]);
  blas::gemm(Op::none, Op::transpose, B, H_, d_head_, 1.0f, h.data() + head_offset_, d_,
             head_weight.data(), d_head_, 1.0f, head_z.data(), H_);
  tail_z.resize(B * tail.shape.labels());
  if (tail.shape.G == 0) return;
  std::vector<float> buffer;
  TailPass::logits(tail, B, tail_input(B, h, buffer), tail_z);
}

double OutputLayer::forward_backward(int64_t B, std::span<const float> h, const CsrMatrix& targets,
                                     std::span<float> dh) {
  // Head: z = h_head W^T + b, turned in place into dz = (sigmoid(z) - y) / B; then
  // dW = dz^T h_head, db = column sums, dh_head = dz W.
  head_dz_.resize(B * H_);
  for (int64_t b = 0; b < B; ++b) std::copy(head_bias.begin(), head_bias.end(), &head_dz_[b * H_]);
  blas::gemm(Op::none, Op::transpose, B, H_, d_head_, 1.0f, h.data() + head_offset_, d_,
             head_weight.data(), d_head_, 1.0f, head_dz_.data(), H_);
  head_positives_.clear();
  for (int64_t b = 0; b < B; ++b) {
    for (int32_t label : targets.row_indices(b)) {
      if (label < H_) head_positives_.push_back({static_cast<int32_t>(b), label});
    }
  }
  const float scale = 1.0f / static_cast<float>(B);
  double loss = bce_block_in_place(head_dz_.data(), B, H_, H_, H_, head_positives_, scale) /
                static_cast<double>(B);
  blas::gemm(Op::transpose, Op::none, H_, d_head_, B, 1.0f, head_dz_.data(), H_,
             h.data() + head_offset_, d_, 0.0f, dhead_weight.data(), d_head_);
  std::fill(dhead_bias.begin(), dhead_bias.end(), 0.0f);
  for (int64_t b = 0; b < B; ++b) cpu::axpy(1.0f, &head_dz_[b * H_], dhead_bias.data(), H_);
  std::fill(dh.begin(), dh.end(), 0.0f);
  blas::gemm(Op::none, Op::none, B, d_head_, H_, 1.0f, head_dz_.data(), H_, head_weight.data(),
             d_head_, 1.0f, dh.data() + head_offset_, d_);

  last_B_ = B;
  if (tail.shape.G == 0) return loss;
  // Tail, on its slice of h; padding slots get no loss or gradient.
  tail_dz_.resize(B * tail.shape.labels());
  last_tail_h_ = tail_input(B, h, tail_h_);
  std::span<float> tail_dh = dh;
  if (d_tail_ != d_) {
    tail_dh_.assign(B * d_tail_, 0.0f);
    tail_dh = tail_dh_;
  }
  loss += tail_pass_.step(tail, B, last_tail_h_, targets, H_, L_tail_, dtail_weight, dtail_bias,
                          tail_dh, tail_dz_);
  if (d_tail_ != d_) {
    for (int64_t b = 0; b < B; ++b) {
      cpu::axpy(1.0f, tail_dh_.data() + b * d_tail_, dh.data() + b * d_, d_tail_);
    }
  }
  return loss;
}

TailBatch OutputLayer::last_tail_batch() const {
  if (tail.shape.G == 0 || last_B_ == 0) return {};
  return {last_B_, d_tail_, last_tail_h_, tail_dz_};
}

}  // namespace haste::model
