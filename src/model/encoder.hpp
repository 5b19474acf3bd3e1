// The encoder of the CPU model: input rows -> h [B, d] through 1..4 layers
//   a_0 = act(x W_0 + b_0),  a_i = act(a_{i-1} W_i + b_i),  h = a_last.
// Weights are stored [in, out], so row f of W_0 is the embedding of input feature f: for sparse
// (tf-idf) inputs layer 0 is an embedding bag (a weighted sum of the rows of the row's
// features), and its gradient lives only in the rows of the batch's features, which the
// optimizer updates lazily. Dense inputs (.npy rows) go through the same layer as a GEMM.
#pragma once

#include <cstdint>
#include <haste/model.hpp>
#include <span>
#include <string>
#include <vector>

namespace haste::model {

struct DenseLayer {
  int64_t in = 0, out = 0;
  std::vector<float> weight, bias;    // [in, out], [out]
  std::vector<float> dweight, dbias;  // gradients, same shapes
};

// What a forward pass keeps for the backward pass: every layer's output a_i [B, out_i] and, for
// dense inputs, the batch's input rows [B, D]. Separate from the encoder so that prediction
// can run on a const model.
struct EncoderActivations {
  std::vector<std::vector<float>> a;
  std::vector<float> dense_batch;
};

class Encoder {
 public:
  // `normalize_rows`: each input row enters scaled to unit L2 norm (ModelConfig::normalize_input).
  Encoder(bool sparse_input, int64_t input_dim, const std::vector<int64_t>& hidden,
          Activation activation, bool normalize_rows);

  // He-uniform weights (fan-in = input width; for sparse rows, which are unit-norm tf-idf
  // vectors, a fan-in of 1: each row is a unit combination of embeddings), zero biases.
  void initialize(uint64_t seed);

  int64_t output_dim() const { return layers_.back().out; }
  // Runs the batch; returns h [B, d] (the last of `act.a`).
  std::span<const float> forward(const InputRows& inputs, EncoderActivations& act) const;
  // Gradients of every layer (overwritten; dW_0 only in the touched rows) from dh [B, d] and the
  // activations of the same batch's forward. `dh` is overwritten (used as scratch).
  void backward(const InputRows& inputs, const EncoderActivations& act, std::span<float> dh);

  std::span<const int32_t> touched_rows() const { return touched_; }
  std::vector<DenseLayer>& layers() { return layers_; }
  const std::vector<DenseLayer>& layers() const { return layers_; }
  bool sparse_input() const { return sparse_input_; }

 private:
  void first_layer_forward(const InputRows& inputs, std::vector<float>& dense_batch,
                           float* out) const;
  void first_layer_backward(const InputRows& inputs, std::span<const float> dense_batch,
                            const float* grad);

  // 1 / ||row|| when normalising (1 for an all-zero row), else 1.
  float row_scale(std::span<const float> row) const;

  bool sparse_input_;
  bool normalize_rows_;
  Activation activation_;
  std::vector<DenseLayer> layers_;
  std::vector<float> grad_scratch_[2];  // da of the layers below, during backward
  std::vector<int32_t> touched_;        // rows of dW_0 holding a gradient
};

}  // namespace haste::model
