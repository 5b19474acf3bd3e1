// Host side of the GPU output layer (output_layer_gpu.hpp): device tensors, the head's cuBLAS
// products, the tail's fused kernel, the optimizer update, and the moves to and from a Model.
//
// cuBLAS is column-major; our row-major tensors are read as their transposes:
//   hT [d, B] row-major  = X  (B x d) col-major, ld B   (X = h; the head's slice starts at
//                                                        column head_offset)
//   W  [H, d_h]          = Wc (d_h x H), ld d_h
//   z  [B, H]            = Zc (H x B),   ld H
// so z = h W^T is Zc = Wc^T X^T, dW = dz^T h is dWc = X^T Zc^T, dh += dz W is
// dhTc += Zc^T Wc^T, and db = Zc 1 (a product with a ones vector): four transposed GEMMs, bf16
// operands, fp32 accumulation, bf16 results except dh (fp32, accumulated).
#include <algorithm>
#include <cmath>
#include <haste/cuda/cuda_check.hpp>
#include <haste/cuda/device_buffer.hpp>
#include <haste/cuda/group_shared_fused.hpp>
#include <haste/cuda/output_layer_gpu.hpp>
#include <haste/error.hpp>
#include <haste/tail_loss.hpp>

#include "cuda/dst_launch.hpp"
#include "cuda/output_layer_launch.hpp"

namespace haste::cuda {
namespace {

int multiprocessors() {
  int device = 0, sms = 0;
  HASTE_CUDA_CHECK(cudaGetDevice(&device));
  HASTE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms;
}

// Blocks along each batch row in the head's loss sweep: enough for ~8 blocks per SM in all.
int sweep_blocks_per_row(int64_t B, int64_t H) {
  const int sms = multiprocessors();
  const int64_t wanted = std::max<int64_t>(1, sms * 8 / std::max<int64_t>(B, 1));
  return static_cast<int>(std::min<int64_t>(wanted, (H + 255) / 256));
}

// dh += dz W has K = H (up to millions) but a small output (B x d_h, a dozen 128 x 128 tiles
// at B = 256): one GEMM would occupy a dozen SMs. It is split along H into slices (a strided
// batch writing fp32 partials, then one kernel adding them): workspace for ~2 tiles per SM.
constexpr int64_t kMinSliceLabels = 4096;
int64_t split_workspace_floats() { return int64_t{2} * multiprocessors() * 128 * 128; }

void gemm(cublasHandle_t handle, cublasOperation_t op_a, cublasOperation_t op_b, int64_t m,
          int64_t n, int64_t k, const bf16* a, int64_t lda, const bf16* b, int64_t ldb, float beta,
          void* c, cudaDataType c_type, int64_t ldc) {
  const float alpha = 1.f;
  HASTE_CUDA_CHECK(cublasGemmEx(handle, op_a, op_b, static_cast<int>(m), static_cast<int>(n),
                                static_cast<int>(k), &alpha, a, CUDA_R_16BF, static_cast<int>(lda),
                                b, CUDA_R_16BF, static_cast<int>(ldb), &beta, c, c_type,
                                static_cast<int>(ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

std::vector<bf16> to_bf16(std::span<const float> values) {
  std::vector<bf16> out(values.size());
  std::transform(values.begin(), values.end(), out.begin(),
                 [](float x) { return __float2bfloat16(x); });
  return out;
}

template <typename T>
void copy_to_device(T* device, std::span<const T> host) {
  if (host.empty()) return;  // an empty head or tail has no device buffer
  HASTE_CUDA_CHECK(cudaMemcpy(device, host.data(), host.size_bytes(), cudaMemcpyHostToDevice));
}

template <typename T>
void copy_to_host(std::span<T> host, const T* device) {
  if (host.empty()) return;
  HASTE_CUDA_CHECK(cudaMemcpy(host.data(), device, host.size_bytes(), cudaMemcpyDeviceToHost));
}

// bf16 device values (weights, logits) into fp32 host values.
void copy_bf16_to_host(std::span<float> host, const DeviceBuffer<bf16>& device) {
  std::vector<bf16> buffer(device.size());
  copy_to_host<bf16>(buffer, device.data());
  std::transform(buffer.begin(), buffer.end(), host.begin(),
                 [](bf16 x) { return __bfloat162float(x); });
}

}  // namespace

OutputLayerShape OutputLayerShape::of(const Model& model) {
  const ModelShape& s = model.shape();
  const GroupSharedShape tail = model.tail_shape();
  return {.d = model.hidden_dim(),
          .H = s.head_labels,
          .L_tail = s.tail_labels(),
          .G = s.groups,
          .g = s.group_size,
          .k = tail.k,
          .private_features = model.config().private_features};
}

OutputLayerShape OutputLayerShape::of(const Model& model, const shard::LabelShard& shard) {
  return of(model).part(shard);
}

OutputLayerShape OutputLayerShape::part(const shard::LabelShard& shard) const {
  OutputLayerShape shape = *this;
  shape.H = shard.head_labels();
  shape.L_tail = std::clamp<int64_t>(L_tail - shard.group_begin * g, 0, shard.groups() * g);
  shape.G = shard.groups();
  return shape;
}

OutputLayerShape OutputLayerShape::haste(int64_t d, int64_t L, int64_t H, int64_t g, int64_t k) {
  check(d > 0 && L > 0 && H >= 0 && g >= 1,
        "output layer: bad shape d = {}, L = {}, H = {}, g = {}", d, L, H, g);
  const int64_t head = std::min(L, (H + g - 1) / g * g);
  const int64_t tail = L - head;
  return {
      .d = d, .H = head, .L_tail = tail, .G = (tail + g - 1) / g, .g = g, .k = tail > 0 ? k : 0};
}

std::vector<std::pair<std::string, int64_t>> OutputLayerMemory::parts() const {
  return {{"head weights", head_weights},
          {"tail weights", tail_weights},
          {"tail indices", tail_indices},
          {"gradients", gradients},
          {"optimizer state", optimizer_state},
          {"activations", activations},
          {"output layer (weights + grads + state)", output_layer_bytes()}};
}

struct OutputLayerGpu::Impl {
  OutputLayerShape shape;
  int64_t max_batch;
  int sweep_blocks = 1;
  DeviceBuffer<bf16> head_w, dhead_w, tail_w, dtail_w;
  DeviceBuffer<float> head_b, dhead_b, tail_b, dtail_b;
  DeviceBuffer<int32_t> indices;
  // Head logits, then dz: [max_batch, H] with row stride z_ld, H rounded up to 8 labels so
  // that every row starts 16-byte aligned (cuBLAS runs ~2x slower on an odd stride, e.g. the
  // dense 670,091-label layer).
  int64_t z_ld = 0;
  DeviceBuffer<bf16> z;
  DeviceBuffer<bf16> ones;  // [max_batch]: db = dz^T 1
  DeviceBuffer<float> positive_dz;
  DeviceBuffer<float> dh_partials;  // split-K workspace of the head's dh
  OptimizerGpu optimizer;
  int head_w_slot = -1, head_b_slot = -1, tail_w_slot = -1, tail_b_slot = -1;
  cublasHandle_t cublas{};

  Impl(const OutputLayerShape& s, const OptimizerConfig& config, int64_t batch, uint64_t seed)
      : shape(s), max_batch(batch), optimizer(config, seed) {
    const int64_t slots = s.G * s.g;
    head_w = DeviceBuffer<bf16>(s.H * s.d_head());
    dhead_w = DeviceBuffer<bf16>(head_w.size());
    head_b = DeviceBuffer<float>(s.H);
    dhead_b = DeviceBuffer<float>(s.H);
    tail_w = DeviceBuffer<bf16>(slots * s.k);
    // Batches the fused kernel cannot update in one launch go through the stored gradient.
    if (batch > kFusedTrainRows) tail_weight_grad();
    tail_b = DeviceBuffer<float>(slots);
    dtail_b = DeviceBuffer<float>(slots);
    indices = DeviceBuffer<int32_t>(s.G * s.k);
    z_ld = (s.H + 7) / 8 * 8;
    z = DeviceBuffer<bf16>(batch * z_ld);
    ones = DeviceBuffer<bf16>(std::vector<bf16>(batch, __float2bfloat16(1.f)));
    if (s.H > 0) {
      head_w_slot = optimizer.add("head.weight", {s.H, s.d_head()});
      head_b_slot = optimizer.add("head.bias", {s.H});
    }
    if (s.G > 0) {
      tail_w_slot = optimizer.add("tail.weight", {slots, s.k});
      tail_b_slot = optimizer.add("tail.bias", {slots});
    }
    sweep_blocks = sweep_blocks_per_row(batch, s.H);
    if (s.H >= 2 * kMinSliceLabels) dh_partials = DeviceBuffer<float>(split_workspace_floats());
    HASTE_CUDA_CHECK(cublasCreate(&cublas));
  }
  ~Impl() { cublasDestroy(cublas); }

  void head_step(int64_t B, int64_t rows, const bf16* hT, const LabelTargetsDevice& targets,
                 float* dhT, double* loss, cudaStream_t stream);
  // Head and tail; the tail's weight gradient goes to dtail_w, or with `tail_update` straight
  // into the tail weights' optimizer update inside the fused kernel.
  void forward_backward(int64_t B, int64_t rows, const bf16* hT, const LabelTargetsDevice& targets,
                        float* dhT, double* loss, const FusedWeightUpdate* tail_update,
                        cudaStream_t stream);
  // The optimizer step of every parameter (after optimizer.begin_step) but the tail weights
  // when the fused kernel updated them.
  void update(bool tail_weights, cudaStream_t stream);

  // The tail's weight gradient, allocated when first needed: a training step whose update runs
  // in the fused kernel never writes it (the gradients' memory is then the biases' alone).
  DeviceBuffer<bf16>& tail_weight_grad() {
    if (dtail_w.size() != tail_w.size()) dtail_w = DeviceBuffer<bf16>(tail_w.size());
    return dtail_w;
  }

  GroupSharedDevice tail_device() const {
    return {shape.tail(), indices.data(), tail_w.data(), tail_b.data()};
  }

  // DST's choice on the device (src/cuda/dst_kernels.cu) for this GPU's tail, the whole one or
  // `part` of it: rewires the indices, writes source [G, k] and returns the changed slots of
  // all ranks; `scores` are the slot scores. On several ranks the global rule's threshold comes
  // from all ranks' scores, gathered on the host (haste::dst_global_prune_threshold).
  int64_t rewire_on_device(DstPrune prune, DstRegrow regrow, double fraction, uint64_t seed,
                           const TailGradientBatch& batch, const double* scores, int32_t* source,
                           const TailPart& part, cudaStream_t stream);

  // Gradient regrowth's view of `batch` on the host (include/haste/dst.hpp).
  struct HostTailBatch {
    std::vector<float> h, dz;  // h_tail [B, d_tail], dz [B, G*g]
    TailBatch view(int64_t B, int64_t d_tail) const { return {B, d_tail, h, dz}; }
  };
  HostTailBatch host_tail_batch(const TailGradientBatch& batch, cudaStream_t stream) const;
};

OutputLayerGpu::Impl::HostTailBatch OutputLayerGpu::Impl::host_tail_batch(
    const TailGradientBatch& batch, cudaStream_t stream) const {
  const int64_t B = batch.B, d_tail = shape.d_tail(), slots = shape.G * shape.g;
  check(B > 0 && batch.hT && batch.targets.indptr && batch.targets.indices,
        "GPU DST: gradient regrowth needs the last batch's hT and targets");
  DeviceBuffer<bf16> z(B * slots);
  group_shared_forward(tail_device(), B, batch.hT, z.data(), stream);
  HASTE_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<bf16> hT_host(d_tail * B);
  copy_to_host<bf16>(hT_host, batch.hT);  // the first d_tail rows: the tail's features
  CsrMatrix targets;
  targets.rows = B;
  targets.cols = shape.labels();  // model ids: the head's come first
  targets.indptr.resize(B + 1);
  copy_to_host<int64_t>(targets.indptr, batch.targets.indptr);
  targets.indices.resize(targets.indptr[B]);
  targets.values.resize(batch.targets.values ? targets.indices.size() : 0);
  copy_to_host<int32_t>(targets.indices, batch.targets.indices);
  copy_to_host<float>(targets.values, batch.targets.values);

  HostTailBatch out;
  out.h.resize(B * d_tail);
  for (int64_t f = 0; f < d_tail; ++f) {
    for (int64_t b = 0; b < B; ++b) out.h[b * d_tail + f] = __bfloat162float(hT_host[f * B + b]);
  }
  // dz = (sigmoid(z) - y) / B over the real tail labels, 0 in the padding slots: the CPU's loss.
  std::vector<float> z_host(z.size());
  copy_bf16_to_host(z_host, z);
  out.dz.resize(B * slots);
  bce_with_logits_tail<float>(B, slots, z_host, targets, {shape.H, shape.L_tail}, out.dz);
  return out;
}

OutputLayerGpu::OutputLayerGpu(const OutputLayerShape& shape, const OptimizerConfig& optimizer,
                               int64_t max_batch, uint64_t seed) {
  check(max_batch > 0 && shape.d > 0 && shape.H >= 0 && shape.L_tail >= 0,
        "GPU output layer: bad shape (d = {}, H = {}, L_tail = {}) or max batch {}", shape.d,
        shape.H, shape.L_tail, max_batch);
  check(shape.L_tail <= shape.G * shape.g,
        "GPU output layer: {} tail labels do not fit G * g = {} slots", shape.L_tail,
        shape.G * shape.g);
  if (shape.G > 0) {
    check_supported(shape.tail(), 16);  // the shape; each call checks its batch
    check(shape.g > 1, "GPU output layer: the tail needs g > 1 (the fused kernel); g = {}",
          shape.g);
  }
  impl_ = std::make_unique<Impl>(shape, optimizer, max_batch, seed);
}

OutputLayerGpu OutputLayerGpu::from_model(const Model& model, const OptimizerConfig& optimizer,
                                          int64_t max_batch, uint64_t seed) {
  OutputLayerGpu layer(OutputLayerShape::of(model), optimizer, max_batch, seed);
  layer.upload(model);
  return layer;
}

OutputLayerGpu::OutputLayerGpu(OutputLayerGpu&&) noexcept = default;
OutputLayerGpu& OutputLayerGpu::operator=(OutputLayerGpu&&) noexcept = default;
OutputLayerGpu::~OutputLayerGpu() = default;

void OutputLayerGpu::upload(const Model& model) {
  upload(model, {0, model.shape().head_labels, 0, model.shape().groups});
}

void OutputLayerGpu::download(Model& model) const {
  download(model, {0, model.shape().head_labels, 0, model.shape().groups});
}

namespace {

// The rows of a host tensor `values` of the model that `shard` owns.
template <typename T>
std::span<T> shard_rows(std::span<T> values, const std::vector<int64_t>& shape,
                        const shard::LabelShard& shard, std::string_view name, int64_t g) {
  const auto rows = shard::label_rows(shard, name, g);
  const int64_t row_size = shape.size() > 1 ? shape[1] : 1;
  return values.subspan(static_cast<size_t>(rows->first * row_size),
                        static_cast<size_t>((rows->second - rows->first) * row_size));
}

}  // namespace

void OutputLayerGpu::upload(const Model& model, const shard::LabelShard& shard) {
  Impl& m = *impl_;
  const OutputLayerShape s = OutputLayerShape::of(model, shard);
  check(s.d == m.shape.d && s.H == m.shape.H && s.G == m.shape.G && s.g == m.shape.g &&
            s.k == m.shape.k && s.private_features == m.shape.private_features,
        "GPU output layer: the model's output layer (d = {}, H = {}, G = {}, g = {}, k = {}) "
        "differs from this one (d = {}, H = {}, G = {}, g = {}, k = {})",
        s.d, s.H, s.G, s.g, s.k, m.shape.d, m.shape.H, m.shape.G, m.shape.g, m.shape.k);
  for (const NamedTensor<const float>& t : model.float_tensors()) {
    if (!t.name.starts_with("head.") && !t.name.starts_with("tail.")) continue;
    const std::span<const float> rows = shard_rows(t.data, t.shape, shard, t.name, s.g);
    if (t.name == "head.weight") copy_to_device<bf16>(m.head_w.data(), to_bf16(rows));
    if (t.name == "head.bias") copy_to_device(m.head_b.data(), rows);
    if (t.name == "tail.weight") copy_to_device<bf16>(m.tail_w.data(), to_bf16(rows));
    if (t.name == "tail.bias") copy_to_device(m.tail_b.data(), rows);
  }
  for (const NamedTensor<const int32_t>& t : model.int_tensors()) {
    if (t.name == "tail.indices") {
      copy_to_device(m.indices.data(), shard_rows(t.data, t.shape, shard, t.name, s.g));
    }
  }
}

void OutputLayerGpu::download(Model& model, const shard::LabelShard& shard) const {
  const Impl& m = *impl_;
  const int64_t g = m.shape.g;
  for (const Parameter& p : model.parameters()) {
    if (!p.name.starts_with("head.") && !p.name.starts_with("tail.")) continue;
    const std::span<float> rows = shard_rows(p.value, p.shape, shard, p.name, g);
    if (p.name == "head.weight") copy_bf16_to_host(rows, m.head_w);
    if (p.name == "head.bias") copy_to_host(rows, m.head_b.data());
    if (p.name == "tail.weight") copy_bf16_to_host(rows, m.tail_w);
    if (p.name == "tail.bias") copy_to_host(rows, m.tail_b.data());
  }
  if (m.shape.G > 0) {
    const GroupSharedShape tail = model.tail_shape();
    copy_to_host<int32_t>(shard_rows(std::span<int32_t>(model.tail().indices), {tail.G, tail.k},
                                     shard, "tail.indices", g),
                          m.indices.data());
  }
}

void OutputLayerGpu::randomize(uint64_t seed) {
  Impl& m = *impl_;
  const OutputLayerShape& s = m.shape;
  HASTE_CUDA_CHECK(launch_fill_uniform(m.head_w.data(), m.head_w.size(), s.d_head(), s.H,
                                       std::sqrt(3.f / static_cast<float>(s.d_head())), seed, 0));
  if (s.G > 0) {
    HASTE_CUDA_CHECK(launch_fill_uniform(m.tail_w.data(), m.tail_w.size(), s.k, s.L_tail,
                                         std::sqrt(3.f / static_cast<float>(s.k)), seed + 1, 0));
    HASTE_CUDA_CHECK(
        launch_random_group_indices(m.indices.data(), s.G, s.d_tail(), s.k, seed + 2, 0));
  }
  m.head_b.fill_bytes(0);
  m.tail_b.fill_bytes(0);
  HASTE_CUDA_CHECK(cudaDeviceSynchronize());
}

void OutputLayerGpu::Impl::head_step(int64_t B, int64_t rows, const bf16* hT,
                                     const LabelTargetsDevice& targets, float* dhT, double* loss,
                                     cudaStream_t stream) {
  const int64_t H = shape.H, d_h = shape.d_head();
  const bf16* x = hT + shape.head_offset() * B;
  HASTE_CUDA_CHECK(cublasSetStream(cublas, stream));
  // Zc (H x B) = Wc^T X^T
  gemm(cublas, CUBLAS_OP_T, CUBLAS_OP_T, H, B, d_h, head_w.data(), d_h, x, B, 0.f, z.data(),
       CUDA_R_16BF, z_ld);
  HeadLossArgs args{.B = B,
                    .rows = rows,
                    .H = H,
                    .ld = z_ld,
                    .z = z.data(),
                    .bias = head_b.data(),
                    .indptr = targets.indptr,
                    .indices = targets.indices,
                    .values = targets.values,
                    .positive_dz = positive_dz.data(),
                    .loss = loss,
                    .inv_batch = 1.f / static_cast<float>(rows)};
  HASTE_CUDA_CHECK(launch_head_loss(args, sweep_blocks, stream));
  // dWc (d_h x H) = X^T Zc^T;  db (H) = Zc 1;  dhTc (B x d_h) += Zc^T Wc^T
  gemm(cublas, CUBLAS_OP_T, CUBLAS_OP_T, d_h, H, B, x, B, z.data(), z_ld, 0.f, dhead_w.data(),
       CUDA_R_16BF, d_h);
  gemm(cublas, CUBLAS_OP_N, CUBLAS_OP_N, H, 1, B, z.data(), z_ld, ones.data(), B, 0.f,
       dhead_b.data(), CUDA_R_32F, H);
  float* dh = dhT + shape.head_offset() * B;
  const int64_t slices =
      std::min(static_cast<int64_t>(dh_partials.size()) / (B * d_h), H / kMinSliceLabels);
  if (slices < 2) {
    gemm(cublas, CUBLAS_OP_T, CUBLAS_OP_T, B, d_h, H, z.data(), z_ld, head_w.data(), d_h, 1.f, dh,
         CUDA_R_32F, B);
    return;
  }
  // Slice s covers labels [s * chunk, (s + 1) * chunk); the remainder joins slice 0.
  const int64_t chunk = H / slices, rest = H - chunk * slices;
  const float one = 1.f, zero = 0.f;
  HASTE_CUDA_CHECK(cublasGemmStridedBatchedEx(
      cublas, CUBLAS_OP_T, CUBLAS_OP_T, static_cast<int>(B), static_cast<int>(d_h),
      static_cast<int>(chunk), &one, z.data(), CUDA_R_16BF, static_cast<int>(z_ld), chunk,
      head_w.data(), CUDA_R_16BF, static_cast<int>(d_h), chunk * d_h, &zero, dh_partials.data(),
      CUDA_R_32F, static_cast<int>(B), B * d_h, static_cast<int>(slices), CUBLAS_COMPUTE_32F,
      CUBLAS_GEMM_DEFAULT));
  if (rest > 0) {
    gemm(cublas, CUBLAS_OP_T, CUBLAS_OP_T, B, d_h, rest, z.data() + chunk * slices, z_ld,
         head_w.data() + chunk * slices * d_h, d_h, 1.f, dh_partials.data(), CUDA_R_32F, B);
  }
  HASTE_CUDA_CHECK(
      launch_add_slices(dh, dh_partials.data(), B * d_h, static_cast<int>(slices), stream));
}

void OutputLayerGpu::Impl::forward_backward(int64_t B, int64_t rows, const bf16* hT,
                                            const LabelTargetsDevice& targets, float* dhT,
                                            double* loss, const FusedWeightUpdate* tail_update,
                                            cudaStream_t stream) {
  check(B > 0 && B <= max_batch && B % 16 == 0,
        "GPU output layer: batch of {} rows; it takes a multiple of 16 up to {}", B, max_batch);
  check(rows >= 1 && rows <= B, "GPU output layer: {} real rows in a batch of {}", rows, B);
  check(hT && dhT && loss && targets.indptr && targets.indices,
        "GPU output layer: a device pointer is null");
  check(targets.nnz >= 0, "GPU output layer: negative target count {}", targets.nnz);
  if (shape.H > 0) {
    if (static_cast<int64_t>(positive_dz.size()) < targets.nnz) {
      positive_dz = DeviceBuffer<float>(std::max<int64_t>(targets.nnz, 2 * positive_dz.size()));
    }
    head_step(B, rows, hT, targets, dhT, loss, stream);
  }
  if (shape.G > 0) {
    const TailTargetsDevice tail_targets{
        targets.indptr, targets.indices, targets.values, {shape.H, shape.L_tail}};
    bf16* dweights = tail_update ? nullptr : tail_weight_grad().data();
    group_shared_fused_train(tail_device(), B, rows, hT, tail_targets, dweights, dtail_b.data(),
                             dhT, loss, stream, tail_update);
  }
}

void OutputLayerGpu::Impl::update(bool tail_weights, cudaStream_t stream) {
  if (shape.H > 0) {
    optimizer.update(head_w_slot, head_w.data(), dhead_w.data(), stream);
    optimizer.update(head_b_slot, head_b.data(), dhead_b.data(), stream);
  }
  if (shape.G > 0) {
    if (tail_weights) optimizer.update(tail_w_slot, tail_w.data(), dtail_w.data(), stream);
    optimizer.update(tail_b_slot, tail_b.data(), dtail_b.data(), stream);
  }
}

void OutputLayerGpu::forward_backward(int64_t B, int64_t rows, const bf16* hT,
                                      const LabelTargetsDevice& targets, float* dhT, double* loss,
                                      cudaStream_t stream) {
  impl_->forward_backward(B, rows, hT, targets, dhT, loss, nullptr, stream);
}

void OutputLayerGpu::update(double lr, cudaStream_t stream) {
  Impl& m = *impl_;
  m.optimizer.begin_step(lr);
  m.update(true, stream);
}

void OutputLayerGpu::train_step(int64_t B, int64_t rows, const bf16* hT,
                                const LabelTargetsDevice& targets, float* dhT, double* loss,
                                double lr, cudaStream_t stream) {
  Impl& m = *impl_;
  m.optimizer.begin_step(lr);
  const bool in_kernel = m.shape.G > 0 && B <= kFusedTrainRows;
  FusedWeightUpdate tail_update;
  if (in_kernel) tail_update = {m.tail_w.data(), m.optimizer.in_kernel_update(m.tail_w_slot)};
  m.forward_backward(B, rows, hT, targets, dhT, loss, in_kernel ? &tail_update : nullptr, stream);
  m.update(!in_kernel, stream);
}

void OutputLayerGpu::predict_topk(int64_t B, const bf16* hT, TopKGpu& topk,
                                  const int32_t* label_map, float* scores, int32_t* labels,
                                  cudaStream_t stream) {
  Impl& m = *impl_;
  const OutputLayerShape& s = m.shape;
  check(B > 0 && B <= m.max_batch, "GPU output layer: top-k of {} rows; it takes 1 to {}", B,
        m.max_batch);
  if (s.H > 0) {  // Zc (H x B) = Wc^T X^T, as in head_step; the bias is added by TopKGpu
    HASTE_CUDA_CHECK(cublasSetStream(m.cublas, stream));
    gemm(m.cublas, CUBLAS_OP_T, CUBLAS_OP_T, s.H, B, s.d_head(), m.head_w.data(), s.d_head(),
         hT + s.head_offset() * B, B, 0.f, m.z.data(), CUDA_R_16BF, m.z_ld);
  }
  TopKInputs inputs{.B = B,
                    .H = s.H,
                    .head_logits = m.z.data(),
                    .head_ld = m.z_ld,
                    .head_bias = m.head_b.data(),
                    .tail = m.tail_device(),
                    .tail_labels = s.L_tail,
                    .hT = hT,
                    .label_map = label_map};
  topk.run(inputs, scores, labels, stream);
}

int64_t OutputLayerGpu::Impl::rewire_on_device(DstPrune prune, DstRegrow regrow, double fraction,
                                               uint64_t seed, const TailGradientBatch& batch,
                                               const double* scores, int32_t* source,
                                               const TailPart& part, cudaStream_t stream) {
  const OutputLayerShape& s = shape;
  const int64_t slots = s.G * s.k, d = s.d_tail();
  const bool sharded = part.comm != nullptr && part.comm->size() > 1;
  DeviceBuffer<unsigned long long> changed(std::vector<unsigned long long>{0});
  DstDeviceArgs args{.first_group = 0,
                     .groups = s.G,
                     .part_first_group = part.group_begin,
                     .k = static_cast<int>(s.k),
                     .d = static_cast<int>(d),
                     .global = prune == DstPrune::global,
                     .threshold = {},
                     .fraction = fraction,
                     .seed = seed,
                     .scores = scores,
                     .norms = nullptr,
                     .indices = indices.data(),
                     .source = source,
                     .changed_slots = changed.data()};
  if (args.global && sharded) {
    std::vector<double> host_scores(slots);
    if (slots > 0) {
      HASTE_CUDA_CHECK(cudaStreamSynchronize(stream));
      copy_to_host<double>(host_scores, scores);
    }
    if (const auto key = haste::dst_global_prune_threshold(host_scores, s.tail(), part, fraction)) {
      args.threshold = {true, key->score, key->slot};
    }
  } else if (args.global) {
    DeviceBuffer<double> sorted(slots);
    DeviceBuffer<int64_t> slot_ids(2 * slots);
    DeviceBuffer<uint8_t> temp(dst_sort_temp_bytes(slots));
    const DstSortScratch scratch{sorted.data(), slot_ids.data(), slot_ids.data() + slots,
                                 temp.data(), temp.size()};
    HASTE_CUDA_CHECK(
        dst_global_threshold(scores, slots, fraction, scratch, &args.threshold, stream));
  }
  if (s.G == 0) {
    // A rank without groups only joins the collectives.
  } else if (regrow == DstRegrow::random) {
    HASTE_CUDA_CHECK(launch_dst_rewire(args, stream));
  } else {
    // Each stretch of groups: its logits on the last batch, dZ, the product dZ^T h of its labels
    // with every feature (cuBLAS, fp32), each group's gradient norms, then its choice; the
    // stretches keep the scratch small (the product is labels x d).
    const int64_t B = batch.B;
    check(B > 0 && batch.hT && batch.targets.indptr && batch.targets.indices,
          "GPU DST: gradient regrowth needs the last batch's hT and targets");
    DeviceBuffer<float> h(d * B);  // the tail's features: the first d rows of hT
    HASTE_CUDA_CHECK(launch_bf16_to_float(batch.hT, d * B, h.data(), stream));
    constexpr int64_t kStretchLabels = 1 << 16;
    const int64_t stretch_groups = std::max<int64_t>(1, std::min(s.G, kStretchLabels / s.g));
    const int64_t stretch_labels = stretch_groups * s.g;
    DeviceBuffer<bf16> z(B * stretch_labels);
    DeviceBuffer<float> dz(B * stretch_labels), product(stretch_labels * d);
    DeviceBuffer<double> norms(stretch_groups * d);
    HASTE_CUDA_CHECK(cublasSetStream(cublas, stream));
    for (int64_t first = 0; first < s.G; first += stretch_groups) {
      const int64_t groups = std::min(stretch_groups, s.G - first), labels = groups * s.g;
      const GroupSharedDevice stretch{{d, groups, s.g, s.k},
                                      indices.data() + first * s.k,
                                      tail_w.data() + first * s.g * s.k,
                                      tail_b.data() + first * s.g};
      group_shared_forward(stretch, B, batch.hT, z.data(), stream);
      const DstTailGradient gradient{.B = B,
                                     .labels = labels,
                                     .real = std::clamp<int64_t>(s.L_tail - first * s.g, 0, labels),
                                     .first_id = s.H + first * s.g,
                                     .z = z.data(),
                                     .indptr = batch.targets.indptr,
                                     .target_ids = batch.targets.indices,
                                     .target_values = batch.targets.values,
                                     .dz = dz.data()};
      HASTE_CUDA_CHECK(launch_dst_tail_gradient(gradient, stream));
      // product [labels, d] = dz^T h (column-major: d x labels = h^T dz)
      const float one = 1.f, zero = 0.f;
      HASTE_CUDA_CHECK(cublasSgemm(cublas, CUBLAS_OP_T, CUBLAS_OP_T, static_cast<int>(d),
                                   static_cast<int>(labels), static_cast<int>(B), &one, h.data(),
                                   static_cast<int>(B), dz.data(), static_cast<int>(labels), &zero,
                                   product.data(), static_cast<int>(d)));
      HASTE_CUDA_CHECK(
          launch_dst_group_norms(product.data(), groups, s.g, d, norms.data(), stream));
      args.first_group = first;
      args.groups = groups;
      args.norms = norms.data();
      HASTE_CUDA_CHECK(launch_dst_rewire(args, stream));
    }
  }
  unsigned long long count = 0;
  HASTE_CUDA_CHECK(
      cudaMemcpyAsync(&count, changed.data(), sizeof(count), cudaMemcpyDeviceToHost, stream));
  HASTE_CUDA_CHECK(cudaStreamSynchronize(stream));  // before the scratch buffers are freed
  return haste::dst_changed_slots_of_all_ranks(static_cast<int64_t>(count), part);
}

DstResult OutputLayerGpu::rewire_tail(DstPrune prune, DstRegrow regrow, double fraction,
                                      uint64_t seed, const TailGradientBatch& batch,
                                      cudaStream_t stream, const TailPart& part) {
  Impl& m = *impl_;
  const OutputLayerShape& s = m.shape;
  const bool groups = s.G > 0;
  const bool alone = (part.comm == nullptr || part.comm->size() == 1) && part.group_begin == 0;
  // A rank without groups still joins the others' collectives inside rewire_tail_indices.
  if (!groups && alone) return {fraction, 0};
  // The slot scores are computed where the weights are, and the weights and optimizer state move
  // there; moving the weights through the host took 0.76 s per rewiring at 670K labels on the
  // H100 (bench/NOTES_train.md).
  DeviceBuffer<double> scores(s.G * s.k);
  if (groups) {
    HASTE_CUDA_CHECK(launch_dst_slot_scores(m.tail_w.data(), s.G, s.g, s.k,
                                            prune == DstPrune::global, scores.data(), stream));
  }
  DeviceBuffer<int32_t> source(s.G * s.k);
  DstResult result{fraction, 0};
  if (s.k <= kMaxDstFanIn && s.d_tail() <= kMaxDstFeatures) {
    // The choice on the device (dst_kernels.cu: the host's rules).
    check(fraction >= 0 && fraction <= 1, "dst: fraction {} must be in [0, 1]", fraction);
    if (fraction == 0 || s.k == s.d_tail()) return result;  // the same on every rank
    result.changed_slots = m.rewire_on_device(prune, regrow, fraction, seed, batch, scores.data(),
                                              source.data(), part, stream);
  } else {
    // The choice on the host from the scores and indices (haste::rewire_tail_indices), for a
    // fan-in or width past the device choice's arrays.
    Impl::HostTailBatch gradient_batch;
    if (regrow == DstRegrow::gradient && groups) gradient_batch = m.host_tail_batch(batch, stream);
    std::vector<double> host_scores(scores.size());
    std::vector<int32_t> indices(m.indices.size()), host_source(source.size());
    if (groups) {
      HASTE_CUDA_CHECK(cudaStreamSynchronize(stream));
      copy_to_host<double>(host_scores, scores.data());
      copy_to_host<int32_t>(indices, m.indices.data());
    }
    result = haste::rewire_tail_indices(
        s.tail(), indices, host_scores,
        gradient_batch.view(regrow == DstRegrow::gradient && groups ? batch.B : 0, s.d_tail()),
        prune, regrow, fraction, seed, host_source, part);
    if (!groups || result.changed_slots == 0) return result;
    copy_to_device<int32_t>(m.indices.data(), indices);
    copy_to_device<int32_t>(source.data(), host_source);
  }
  if (groups && result.changed_slots > 0) {
    cuda::remap_tail_slots(s.tail(), source.data(), m.tail_w.data(), stream);
    m.optimizer.remap_tail_slots(s.tail(), source.data(), stream);
  }
  HASTE_CUDA_CHECK(cudaStreamSynchronize(stream));  // before the scratch buffers are freed
  return result;
}

const OutputLayerShape& OutputLayerGpu::shape() const { return impl_->shape; }

OutputLayerMemory OutputLayerGpu::memory() const {
  const Impl& m = *impl_;
  OutputLayerMemory out;
  out.head_weights = m.head_w.bytes() + m.head_b.bytes();
  out.tail_weights = m.tail_w.bytes() + m.tail_b.bytes();
  out.tail_indices = m.indices.bytes();
  out.gradients = m.dhead_w.bytes() + m.dhead_b.bytes() + m.dtail_w.bytes() + m.dtail_b.bytes();
  out.optimizer_state = m.optimizer.state_bytes();
  out.activations = m.z.bytes() + m.ones.bytes() + m.positive_dz.bytes() + m.dh_partials.bytes();
  return out;
}

OptimizerGpu& OutputLayerGpu::optimizer() { return impl_->optimizer; }
bf16* OutputLayerGpu::head_weight() { return impl_->head_w.data(); }
float* OutputLayerGpu::head_bias() { return impl_->head_b.data(); }
bf16* OutputLayerGpu::tail_weight() { return impl_->tail_w.data(); }
float* OutputLayerGpu::tail_bias() { return impl_->tail_b.data(); }
int32_t* OutputLayerGpu::tail_indices() { return impl_->indices.data(); }
const bf16* OutputLayerGpu::head_weight_grad() const { return impl_->dhead_w.data(); }
const float* OutputLayerGpu::head_bias_grad() const { return impl_->dhead_b.data(); }
const bf16* OutputLayerGpu::tail_weight_grad() const { return impl_->dtail_w.data(); }
const float* OutputLayerGpu::tail_bias_grad() const { return impl_->dtail_b.data(); }

}  // namespace haste::cuda
