// Host side of the GPU encoder (include/haste/cuda/encoder_gpu.hpp): buffers, the cuBLAS
// products of the dense layers, the order of the kernels, and the model mirror.
#include <fmt/format.h>

#include <algorithm>
#include <haste/cuda/cuda_check.hpp>
#include <haste/cuda/device_buffer.hpp>
#include <haste/cuda/encoder_gpu.hpp>
#include <haste/error.hpp>

#include "cuda/encoder_launch.hpp"

namespace haste::cuda {
namespace {

// Sparse scratch to start with; it grows with the batches.
constexpr int64_t kInitialNonzerosPerRow = 64;

int64_t round_up(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

int as_int(int64_t n, const char* what) {
  check(n >= 0 && n < (int64_t{1} << 31), "GPU encoder: {} = {} exceeds the 32-bit range", what, n);
  return static_cast<int>(n);
}

// Row-major C [M, N] = op(A) [M, K] x op(B) [K, N] + beta C, through column-major cuBLAS (C^T =
// op(B)^T op(A)^T). Plain fp32 arithmetic: the CPU reference's, no tf32.
void gemm(cublasHandle_t handle, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
          const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
          int64_t ldc) {
  const float one = 1.0f;
  HASTE_CUDA_CHECK(cublasSgemm(handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                               trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, as_int(N, "N"), as_int(M, "M"),
                               as_int(K, "K"), &one, B, as_int(ldb, "ldb"), A, as_int(lda, "lda"),
                               &beta, C, as_int(ldc, "ldc")));
}

struct Layer {
  int64_t in = 0, out = 0;
  DeviceBuffer<float> weight, bias, dweight, dbias;
};

}  // namespace

EncoderSpec EncoderSpec::of(const Model& model) {
  const ModelConfig& config = model.config();
  return {model.shape().sparse_input, model.shape().input_dim, config.hidden, config.activation,
          config.dropout};
}

struct EncoderGpu::Impl {
  EncoderSpec spec;
  int64_t max_B = 0;
  cublasHandle_t cublas{};
  std::vector<Layer> layers;
  std::vector<DeviceBuffer<float>> a;  // each layer's output [max_B, out_i]
  DeviceBuffer<float> h, dh, dhT, ones;
  DeviceBuffer<bf16> hT;
  DeviceBuffer<float> grad[2];  // d loss / d a_i during backward, [max_B, widest]
  // Sparse inputs: the first layer's gradient on the batch's distinct features.
  SparseGradScratch sparse;
  DeviceBuffer<int32_t> sparse_ints;  // row_of .. touched_count of `sparse`
  DeviceBuffer<uint8_t> sparse_temp;
  DeviceBuffer<float> sparse_dweight;  // [capacity, out_0]
  // The last forward's batch rows and dropout mask, for backward.
  int64_t rows = 0, B = 0;
  DropoutMask mask;

  bool tanh() const { return spec.activation == Activation::tanh; }
  int64_t d() const { return layers.back().out; }

  void reserve_nonzeros(int64_t nnz) {
    if (!spec.sparse_input || nnz <= sparse.capacity) return;
    const int64_t capacity = std::max(round_up(nnz, 1024), 2 * sparse.capacity);
    as_int(capacity, "batch nonzeros");
    // Freeing memory that queued work may still read is safe: cudaFree waits for the device.
    sparse_ints = DeviceBuffer<int32_t>(6 * capacity + 1);
    sparse_temp = DeviceBuffer<uint8_t>(sparse_grad_temp_bytes(capacity));
    sparse_dweight = DeviceBuffer<float>(capacity * layers[0].out);
    int32_t* p = sparse_ints.data();
    for (int32_t** array : {&sparse.row_of, &sparse.iota, &sparse.sorted_features,
                            &sparse.sorted_entries, &sparse.starts, &sparse.touched}) {
      *array = p;
      p += capacity;
    }
    sparse.touched_count = p;
    sparse.temp = sparse_temp.data();
    sparse.temp_bytes = sparse_temp.size();
    sparse.capacity = capacity;
    HASTE_CUDA_CHECK(launch_fill_iota(sparse.iota, capacity, nullptr));
    HASTE_CUDA_CHECK(cudaMemset(sparse.touched_count, 0, sizeof(int32_t)));
    HASTE_CUDA_CHECK(cudaDeviceSynchronize());
  }

  void check_batch(const DeviceBatch& batch) const {
    check(batch.sparse_input() == spec.sparse_input,
          "GPU encoder: the model was built for {} inputs but the batch has {} inputs",
          spec.sparse_input ? "sparse" : "dense", batch.sparse_input() ? "sparse" : "dense");
    check(batch.input_cols == spec.input_dim,
          "GPU encoder: the model expects {} input features but the batch has {}", spec.input_dim,
          batch.input_cols);
    check(batch.B > 0 && batch.B % 16 == 0 && batch.B <= max_B && batch.rows <= batch.B,
          "GPU encoder: batch of {} rows padded to {}: the padded size must be a multiple of 16 "
          "in [16, {}] (the encoder's max_batch)",
          batch.rows, batch.B, max_B);
    check(spec.sparse_input ? batch.input_indptr && (batch.input_nnz == 0 ||
                                                     (batch.input_indices && batch.input_values))
                            : batch.dense != nullptr,
          "GPU encoder: the batch's input pointers are null");
  }
};

EncoderGpu::EncoderGpu(const EncoderSpec& spec, int64_t max_batch)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  check(!spec.hidden.empty() && spec.hidden.size() <= 4,
        "GPU encoder: {} layers; the encoder has 1 to 4", spec.hidden.size());
  check(spec.input_dim > 0, "GPU encoder: input width {} must be positive", spec.input_dim);
  check(max_batch > 0, "GPU encoder: max_batch = {} must be positive", max_batch);
  check(spec.dropout >= 0 && spec.dropout < 1, "GPU encoder: dropout {} must be in [0, 1)",
        spec.dropout);
  m.spec = spec;
  m.max_B = round_up(max_batch, 16);
  HASTE_CUDA_CHECK(cublasCreate(&m.cublas));
  int64_t in = spec.input_dim;
  for (size_t i = 0; i < spec.hidden.size(); ++i) {
    const int64_t out = spec.hidden[i];
    check(out > 0, "GPU encoder: layer {} has width {}", i, out);
    Layer layer;
    layer.in = in;
    layer.out = out;
    layer.weight = DeviceBuffer<float>(in * out);
    layer.bias = DeviceBuffer<float>(out);
    // The sparse first layer's gradient lives in sparse_dweight instead.
    if (i > 0 || !spec.sparse_input) layer.dweight = DeviceBuffer<float>(in * out);
    layer.dbias = DeviceBuffer<float>(out);
    m.layers.push_back(std::move(layer));
    m.a.emplace_back(m.max_B * out);
    in = out;
  }
  // Gradients are needed for every layer's output, never for the input.
  const int64_t widest = *std::max_element(spec.hidden.begin(), spec.hidden.end());
  const int64_t d = m.d();
  m.h = DeviceBuffer<float>(m.max_B * d);
  m.hT = DeviceBuffer<bf16>(m.max_B * d);
  m.dh = DeviceBuffer<float>(m.max_B * d);
  m.dhT = DeviceBuffer<float>(m.max_B * d);
  m.ones = DeviceBuffer<float>(std::vector<float>(m.max_B, 1.0f));
  for (auto& g : m.grad) g = DeviceBuffer<float>(m.max_B * widest);
  m.reserve_nonzeros(m.max_B * kInitialNonzerosPerRow);
}

EncoderGpu EncoderGpu::from_model(const Model& model, int64_t max_batch) {
  EncoderGpu encoder(EncoderSpec::of(model), max_batch);
  encoder.upload(model);
  return encoder;
}

EncoderGpu::EncoderGpu(EncoderGpu&&) noexcept = default;
EncoderGpu& EncoderGpu::operator=(EncoderGpu&&) noexcept = default;
EncoderGpu::~EncoderGpu() {
  if (impl_) cublasDestroy(impl_->cublas);
}

const EncoderSpec& EncoderGpu::spec() const { return impl_->spec; }
int64_t EncoderGpu::output_dim() const { return impl_->d(); }
int64_t EncoderGpu::max_batch() const { return impl_->max_B; }
float* EncoderGpu::h() { return impl_->h.data(); }
bf16* EncoderGpu::hT() { return impl_->hT.data(); }
float* EncoderGpu::dh() { return impl_->dh.data(); }
float* EncoderGpu::dhT() { return impl_->dhT.data(); }

void EncoderGpu::reserve_nonzeros(int64_t nnz) { impl_->reserve_nonzeros(nnz); }

const int32_t* EncoderGpu::touched_rows() const {
  return impl_->spec.sparse_input ? impl_->sparse.touched : nullptr;
}

EncoderMemory EncoderGpu::memory() const {
  const Impl& m = *impl_;
  EncoderMemory out;
  for (const Layer& layer : m.layers) {
    out.weights += layer.weight.bytes() + layer.bias.bytes();
    out.gradients += layer.dweight.bytes() + layer.dbias.bytes();
  }
  out.gradients += m.sparse_dweight.bytes();
  for (const DeviceBuffer<float>& a : m.a) out.activations += a.bytes();
  out.activations += m.h.bytes() + m.dh.bytes() + m.dhT.bytes() + m.ones.bytes() + m.hT.bytes() +
                     m.grad[0].bytes() + m.grad[1].bytes() + m.sparse_ints.bytes() +
                     m.sparse_temp.bytes();
  return out;
}
const int32_t* EncoderGpu::touched_count() const {
  return impl_->spec.sparse_input ? impl_->sparse.touched_count : nullptr;
}
float* EncoderGpu::sparse_weight_grad() {
  return impl_->spec.sparse_input ? impl_->sparse_dweight.data() : nullptr;
}
int64_t EncoderGpu::max_touched_rows() const { return impl_->sparse.capacity; }

std::vector<DeviceParameter> EncoderGpu::parameters() {
  std::vector<DeviceParameter> out;
  for (size_t i = 0; i < impl_->layers.size(); ++i) {
    Layer& layer = impl_->layers[i];
    const std::string prefix = fmt::format("encoder.{}.", i);
    const bool row_sparse = i == 0 && impl_->spec.sparse_input;
    out.push_back({prefix + "weight",
                   {layer.in, layer.out},
                   layer.weight.data(),
                   row_sparse ? impl_->sparse_dweight.data() : layer.dweight.data(),
                   row_sparse});
    out.push_back({prefix + "bias", {layer.out}, layer.bias.data(), layer.dbias.data(), false});
  }
  return out;
}

void EncoderGpu::upload(std::span<const NamedTensor<const float>> tensors) {
  for (DeviceParameter& p : parameters()) {
    auto found = std::find_if(tensors.begin(), tensors.end(),
                              [&](const auto& t) { return t.name == p.name; });
    check(found != tensors.end(), "GPU encoder: no tensor {} to upload", p.name);
    check(found->shape == p.shape, "GPU encoder: {} has shape [{}], the encoder needs [{}]", p.name,
          fmt::join(found->shape, ", "), fmt::join(p.shape, ", "));
    HASTE_CUDA_CHECK(
        cudaMemcpy(p.value, found->data.data(), found->data.size_bytes(), cudaMemcpyHostToDevice));
  }
}

void EncoderGpu::upload(const Model& model) { upload(model.float_tensors()); }

void EncoderGpu::download(Model& model, cudaStream_t stream) const {
  std::vector<Parameter> host = model.parameters();
  for (DeviceParameter& p : const_cast<EncoderGpu*>(this)->parameters()) {
    auto found =
        std::find_if(host.begin(), host.end(), [&](const auto& t) { return t.name == p.name; });
    check(found != host.end() && found->shape == p.shape,
          "GPU encoder: the model has no parameter {} of shape [{}]", p.name,
          fmt::join(p.shape, ", "));
    HASTE_CUDA_CHECK(cudaMemcpyAsync(found->value.data(), p.value, found->value.size_bytes(),
                                     cudaMemcpyDeviceToHost, stream));
  }
  HASTE_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void EncoderGpu::forward(const DeviceBatch& batch, std::optional<uint64_t> dropout_seed,
                         cudaStream_t stream) {
  Impl& m = *impl_;
  m.check_batch(batch);
  const int64_t B = batch.B, d = m.d();
  m.rows = batch.rows;
  m.B = B;
  m.mask = {};
  if (dropout_seed && m.spec.dropout > 0) {
    m.mask = {true, *dropout_seed, m.spec.dropout,
              static_cast<float>(1.0 / (1.0 - m.spec.dropout))};
  }
  HASTE_CUDA_CHECK(cublasSetStream(m.cublas, stream));
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const Layer& layer = m.layers[i];
    float* out = m.a[i].data();
    if (i == 0 && m.spec.sparse_input) {
      HASTE_CUDA_CHECK(launch_embedding_bag(
          batch.input_indptr, batch.input_indices, batch.input_values, layer.weight.data(),
          layer.bias.data(), B, layer.out, m.tanh(), out, stream));
      continue;
    }
    const float* below = i == 0 ? batch.dense : m.a[i - 1].data();
    gemm(m.cublas, false, false, B, layer.out, layer.in, below, layer.in, layer.weight.data(),
         layer.out, 0.0f, out, layer.out);
    HASTE_CUDA_CHECK(
        launch_bias_activation(layer.bias.data(), B, layer.out, m.tanh(), out, stream));
  }
  HASTE_CUDA_CHECK(launch_encoder_output(m.a.back().data(), m.rows, B, d, m.mask, m.h.data(),
                                         m.hT.data(), stream));
  HASTE_CUDA_CHECK(cudaMemsetAsync(m.dh.data(), 0, B * d * sizeof(float), stream));
  HASTE_CUDA_CHECK(cudaMemsetAsync(m.dhT.data(), 0, B * d * sizeof(float), stream));
}

void EncoderGpu::backward(const DeviceBatch& batch, cudaStream_t stream) {
  Impl& m = *impl_;
  m.check_batch(batch);
  check(batch.B == m.B && batch.rows == m.rows,
        "GPU encoder: backward on a batch of {} rows, the last forward ran {}", batch.rows, m.rows);
  const int64_t B = m.B;
  m.reserve_nonzeros(batch.input_nnz);
  HASTE_CUDA_CHECK(cublasSetStream(m.cublas, stream));
  float* grad = m.grad[0].data();
  HASTE_CUDA_CHECK(launch_output_gradient(m.a.back().data(), m.dh.data(), m.dhT.data(), m.rows, B,
                                          m.d(), m.mask, m.tanh(), grad, stream));
  const float one = 1.0f, zero = 0.0f;
  for (size_t i = m.layers.size(); i-- > 0;) {
    Layer& layer = m.layers[i];
    // dbias = grad^T 1: column sums of grad [B, out] (column-major [out, B]).
    HASTE_CUDA_CHECK(cublasSgemv(m.cublas, CUBLAS_OP_N, as_int(layer.out, "width"), as_int(B, "B"),
                                 &one, grad, as_int(layer.out, "width"), m.ones.data(), 1, &zero,
                                 layer.dbias.data(), 1));
    if (i == 0 && m.spec.sparse_input) {
      if (batch.input_nnz == 0) {
        HASTE_CUDA_CHECK(cudaMemsetAsync(m.sparse.touched_count, 0, sizeof(int32_t), stream));
        break;
      }
      HASTE_CUDA_CHECK(launch_touched_rows(batch.input_indptr, batch.input_indices, B,
                                           batch.input_nnz, m.spec.input_dim, m.sparse, stream));
      HASTE_CUDA_CHECK(launch_sparse_weight_grad(batch.input_values, grad, layer.out,
                                                 batch.input_nnz, m.sparse, m.sparse_dweight.data(),
                                                 stream));
      break;
    }
    const float* below = i == 0 ? batch.dense : m.a[i - 1].data();
    gemm(m.cublas, true, false, layer.in, layer.out, B, below, layer.in, grad, layer.out, 0.0f,
         layer.dweight.data(), layer.out);
    if (i == 0) break;
    // The gradient of the layer below goes to the other scratch buffer.
    float* next = grad == m.grad[0].data() ? m.grad[1].data() : m.grad[0].data();
    gemm(m.cublas, false, true, B, layer.in, layer.out, grad, layer.out, layer.weight.data(),
         layer.out, 0.0f, next, layer.in);
    HASTE_CUDA_CHECK(
        launch_activation_backward(m.a[i - 1].data(), B * layer.in, m.tanh(), next, stream));
    grad = next;
  }
}

}  // namespace haste::cuda
