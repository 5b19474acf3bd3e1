// The encoder's forward and backward passes on the CPU (see encoder.hpp).
#include "model/encoder.hpp"

#include <algorithm>
#include <cmath>
#include <haste/error.hpp>

#include "cpu/vector_ops.hpp"
#include "data/random.hpp"
#include "model/blas.hpp"
#include "model/parameter_init.hpp"

namespace haste::model {
namespace {

using blas::Op;

void activate(Activation activation, std::span<float> values) {
  if (activation == Activation::relu) {
#pragma omp simd
    for (size_t i = 0; i < values.size(); ++i) values[i] = std::max(values[i], 0.0f);
  } else {
    for (float& v : values) v = std::tanh(v);
  }
}

// grad *= act'(pre-activation), written with the activation's output a: relu' = [a > 0],
// tanh' = 1 - a^2.
void activation_backward(Activation activation, std::span<const float> a, std::span<float> grad) {
  if (activation == Activation::relu) {
#pragma omp simd
    for (size_t i = 0; i < grad.size(); ++i) grad[i] = a[i] > 0 ? grad[i] : 0.0f;
  } else {
#pragma omp simd
    for (size_t i = 0; i < grad.size(); ++i) grad[i] *= 1.0f - a[i] * a[i];
  }
}

// rows x cols row-major -> column sums into out (overwritten), in row order (deterministic).
void column_sums(const float* m, int64_t rows, int64_t cols, float* out) {
  std::fill_n(out, cols, 0.0f);
  for (int64_t r = 0; r < rows; ++r) cpu::axpy(1.0f, m + r * cols, out, cols);
}

// Below this many multiply-adds the embedding bag runs on the calling thread.
constexpr int64_t kMinParallelWork = int64_t{1} << 15;

}  // namespace

Encoder::Encoder(bool sparse_input, int64_t input_dim, const std::vector<int64_t>& hidden,
                 Activation activation, bool normalize_rows)
    : sparse_input_(sparse_input), normalize_rows_(normalize_rows), activation_(activation) {
  int64_t in = input_dim;
  for (int64_t out : hidden) {
    DenseLayer layer;
    layer.in = in;
    layer.out = out;
    layer.weight.assign(in * out, 0.0f);
    layer.dweight.assign(in * out, 0.0f);
    layer.bias.assign(out, 0.0f);
    layer.dbias.assign(out, 0.0f);
    layers_.push_back(std::move(layer));
    in = out;
  }
}

void Encoder::initialize(uint64_t seed) {
  for (size_t i = 0; i < layers_.size(); ++i) {
    DenseLayer& layer = layers_[i];
    const int64_t fan_in = (i == 0 && sparse_input_) ? 1 : layer.in;
    fill_uniform(layer.weight, 2.0 / static_cast<double>(fan_in), hash_key(seed, 0xe4c0de, i));
    std::fill(layer.bias.begin(), layer.bias.end(), 0.0f);
  }
}

float Encoder::row_scale(std::span<const float> row) const {
  if (!normalize_rows_) return 1.0f;
  double sum = 0;
  for (float v : row) sum += double{v} * v;
  return sum > 0 ? static_cast<float>(1.0 / std::sqrt(sum)) : 1.0f;
}

void Encoder::first_layer_forward(const InputRows& inputs, std::vector<float>& dense_batch,
                                  float* out) const {
  const DenseLayer& layer = layers_[0];
  const int64_t B = inputs.size(), n = layer.out;
  if (!sparse_input_) {
    dense_batch.resize(B * layer.in);
    for (int64_t b = 0; b < B; ++b) {
      auto row = inputs.dense->row(inputs.rows[b]);
      const float scale = row_scale(row);
      std::transform(row.begin(), row.end(), dense_batch.begin() + b * layer.in,
                     [scale](float v) { return v * scale; });
      std::copy(layer.bias.begin(), layer.bias.end(), out + b * n);
    }
    blas::gemm(Op::none, Op::none, B, n, layer.in, 1.0f, dense_batch.data(), layer.in,
               layer.weight.data(), n, 1.0f, out, n);
    return;
  }
  // Embedding bag: each row is its own sum, so batch rows run in parallel without races.
  const CsrMatrix& x = *inputs.sparse;
  int64_t nnz = 0;
  for (int64_t row : inputs.rows) nnz += x.indptr[row + 1] - x.indptr[row];
#pragma omp parallel for schedule(static) if (nnz * n >= kMinParallelWork)
  for (int64_t b = 0; b < B; ++b) {
    float* a = out + b * n;
    std::copy(layer.bias.begin(), layer.bias.end(), a);
    const int64_t row = inputs.rows[b];
    auto features = x.row_indices(row);
    auto values = x.row_values(row);
    const float scale = row_scale(values);
    for (size_t i = 0; i < features.size(); ++i) {
      cpu::axpy(values[i] * scale, layer.weight.data() + int64_t{features[i]} * n, a, n);
    }
  }
}

std::span<const float> Encoder::forward(const InputRows& inputs, EncoderActivations& act) const {
  check(inputs.sparse != nullptr || inputs.dense != nullptr, "encoder: the batch has no inputs");
  check(sparse_input_ == (inputs.sparse != nullptr),
        "encoder: the model was built for {} inputs but the data has {} features",
        sparse_input_ ? "sparse" : "dense", sparse_input_ ? "dense" : "sparse");
  const int64_t width = sparse_input_ ? inputs.sparse->cols : inputs.dense->cols;
  check(width == layers_[0].in,
        "encoder: the model expects {} input features but the data has {}; use data with the "
        "training set's feature space",
        layers_[0].in, width);
  const int64_t B = inputs.size();
  act.a.resize(layers_.size());
  for (size_t i = 0; i < layers_.size(); ++i) {
    const DenseLayer& layer = layers_[i];
    std::vector<float>& a = act.a[i];
    a.resize(B * layer.out);
    if (i == 0) {
      first_layer_forward(inputs, act.dense_batch, a.data());
    } else {
      for (int64_t b = 0; b < B; ++b) {
        std::copy(layer.bias.begin(), layer.bias.end(), a.begin() + b * layer.out);
      }
      blas::gemm(Op::none, Op::none, B, layer.out, layer.in, 1.0f, act.a[i - 1].data(), layer.in,
                 layer.weight.data(), layer.out, 1.0f, a.data(), layer.out);
    }
    activate(activation_, a);
  }
  return act.a.back();
}

void Encoder::first_layer_backward(const InputRows& inputs, std::span<const float> dense_batch,
                                   const float* grad) {
  DenseLayer& layer = layers_[0];
  const int64_t B = inputs.size(), n = layer.out;
  column_sums(grad, B, n, layer.dbias.data());
  if (!sparse_input_) {
    blas::gemm(Op::transpose, Op::none, layer.in, n, B, 1.0f, dense_batch.data(), layer.in, grad, n,
               0.0f, layer.dweight.data(), n);
    return;
  }
  // Only the rows of the batch's features get a gradient; the previous batch's rows are zeroed
  // first so that dW_0 is the exact gradient everywhere. The batch's (feature, row) pairs are
  // sorted by feature so that each feature's row of dW_0 is summed by one thread, in batch order.
  for (int32_t f : touched_) std::fill_n(layer.dweight.data() + int64_t{f} * n, n, 0.0f);
  const CsrMatrix& x = *inputs.sparse;
  struct Entry {
    int32_t feature;
    int32_t b;
    float value;
  };
  std::vector<Entry> entries;
  for (int64_t b = 0; b < B; ++b) {
    auto features = x.row_indices(inputs.rows[b]);
    auto values = x.row_values(inputs.rows[b]);
    const float scale = row_scale(values);
    for (size_t i = 0; i < features.size(); ++i) {
      entries.push_back({features[i], static_cast<int32_t>(b), values[i] * scale});
    }
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& p, const Entry& q) {
    return p.feature != q.feature ? p.feature < q.feature : p.b < q.b;
  });
  touched_.clear();
  std::vector<size_t> starts;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i == 0 || entries[i].feature != entries[i - 1].feature) {
      touched_.push_back(entries[i].feature);
      starts.push_back(i);
    }
  }
  starts.push_back(entries.size());
  const auto features = static_cast<int64_t>(touched_.size());
#pragma omp parallel for schedule(static) if (static_cast <int64_t>(entries.size()) * n >= \
                                              kMinParallelWork)
  for (int64_t u = 0; u < features; ++u) {
    float* dw = layer.dweight.data() + int64_t{touched_[u]} * n;
    for (size_t i = starts[u]; i < starts[u + 1]; ++i) {
      cpu::axpy(entries[i].value, grad + int64_t{entries[i].b} * n, dw, n);
    }
  }
}

void Encoder::backward(const InputRows& inputs, const EncoderActivations& act,
                       std::span<float> dh) {
  const int64_t B = inputs.size();
  std::span<float> grad = dh;  // d loss / d a_i, for i from the top down
  for (size_t i = layers_.size(); i-- > 0;) {
    DenseLayer& layer = layers_[i];
    activation_backward(activation_, act.a[i], grad);
    if (i == 0) {
      first_layer_backward(inputs, act.dense_batch, grad.data());
      break;
    }
    const std::vector<float>& below = act.a[i - 1];
    blas::gemm(Op::transpose, Op::none, layer.in, layer.out, B, 1.0f, below.data(), layer.in,
               grad.data(), layer.out, 0.0f, layer.dweight.data(), layer.out);
    column_sums(grad.data(), B, layer.out, layer.dbias.data());
    // The gradient of the layer below goes to whichever scratch buffer `grad` is not in.
    std::vector<float>& next =
        grad.data() == grad_scratch_[0].data() ? grad_scratch_[1] : grad_scratch_[0];
    next.resize(B * layer.in);
    blas::gemm(Op::none, Op::transpose, B, layer.in, layer.out, 1.0f, grad.data(), layer.out,
               layer.weight.data(), layer.out, 0.0f, next.data(), layer.in);
    grad = std::span<float>(next);
  }
}

}  // namespace haste::model
