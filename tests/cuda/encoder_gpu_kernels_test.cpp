// The GPU encoder against the CPU model's encoder (src/model/encoder.hpp) on fresh random
// inputs: forward (h, hT, the dropout mask), backward (every gradient, the touched rows), with
// outputs NaN-poisoned first. Both sides compute in fp32 with different summation orders, so
// fp32 bounds apply (METHOD.md: far under 1e-3; we ask 1e-5); hT is bf16(h) exactly, padding
// rows are exactly zero and the dropout mask and the touched-row set are equal, not close.
// Also: the batch uploader (padding, label renumbering, double buffering) and the model mirror.
// Skipped without a GPU.
#include <cuda_bf16.h>

#include <algorithm>
#include <haste/cuda/batch_upload.hpp>
#include <haste/cuda/cuda_check.hpp>
#include <haste/cuda/encoder_gpu.hpp>
#include <numeric>
#include <vector>

#include "data/random.hpp"
#include "model/encoder.hpp"
#include "model/model_test_util.hpp"
#include "test_util/device_copy.hpp"
#include "test_util/gpu.hpp"
#include "test_util/gpu_compare.hpp"
#include "test_util/random_tensors.hpp"

namespace haste {
namespace {

using cuda::bf16;
using test_util::download;
using test_util::relative_error;
using test_util::to_double;
using test_util::upload;

struct Case {
  bool sparse;
  int64_t input_dim;  // F or D
  int64_t max_row_nnz;
  std::vector<int64_t> hidden;
  Activation activation;
  double dropout;
  int64_t rows;
  bool normalize;
};

// N rows of F features, each with 0..max_nnz distinct sorted features (some rows empty).
CsrMatrix random_sparse(test_util::RandomTensors& random, int64_t N, int64_t F, int64_t max_nnz) {
  CsrMatrix x;
  x.cols = F;
  std::vector<int32_t> indices;
  std::vector<float> values;
  for (int64_t r = 0; r < N; ++r) {
    const int64_t n = random.below(max_nnz + 1);
    std::vector<bool> taken(F, false);
    indices.clear();
    while (static_cast<int64_t>(indices.size()) < n) {
      const auto f = static_cast<int32_t>(random.below(F));
      if (!taken[f]) indices.push_back(f);
      taken[f] = true;
    }
    std::sort(indices.begin(), indices.end());
    values = random.tensor<float>(n, 0.05, 1.0);
    x.append_row(indices, values);
  }
  return x;
}

std::vector<NamedTensor<const float>> encoder_tensors(const model::Encoder& encoder) {
  std::vector<NamedTensor<const float>> out;
  for (size_t i = 0; i < encoder.layers().size(); ++i) {
    const model::DenseLayer& layer = encoder.layers()[i];
    out.push_back({fmt::format("encoder.{}.weight", i), {layer.in, layer.out}, layer.weight});
    out.push_back({fmt::format("encoder.{}.bias", i), {layer.out}, layer.bias});
  }
  return out;
}

class EncoderGpuTest : public ::testing::TestWithParam<Case> {};

TEST_P(EncoderGpuTest, MatchesTheCpuEncoder) {
  HASTE_REQUIRE_GPU();
  const Case c = GetParam();
  test_util::RandomTensors random(static_cast<uint64_t>(c.input_dim * 31 + c.rows));
  const int64_t N = c.rows + 37;
  CsrMatrix x;
  DenseMatrix dense;
  if (c.sparse) {
    x = random_sparse(random, N, c.input_dim, c.max_row_nnz);
  } else {
    dense = {N, c.input_dim, random.tensor<float>(N * c.input_dim)};
  }
  std::vector<int64_t> rows(c.rows);  // a shuffled subset of the rows
  for (auto& r : rows) r = random.below(N);
  const InputRows inputs{c.sparse ? &x : nullptr, c.sparse ? nullptr : &dense, rows};

  model::Encoder cpu(c.sparse, c.input_dim, c.hidden, c.activation, c.normalize);
  cpu.initialize(11);
  for (auto& layer : cpu.layers()) layer.bias = random.tensor<float>(layer.out, -0.1, 0.1);

  // CPU forward and the CPU model's dropout (src/model/model.cpp).
  model::EncoderActivations act;
  auto encoded = cpu.forward(inputs, act);
  std::vector<float> h(encoded.begin(), encoded.end());
  const int64_t d = c.hidden.back(), R = c.rows, B = (R + 15) / 16 * 16;
  const uint64_t seed = 1234;
  std::vector<float> mask(R * d, 1.0f);
  if (c.dropout > 0) {
    for (int64_t b = 0; b < R; ++b) {
      Rng rng(hash_key(seed, b));
      for (int64_t j = 0; j < d; ++j) {
        mask[b * d + j] =
            rng.uniform() < c.dropout ? 0.0f : static_cast<float>(1.0 / (1.0 - c.dropout));
      }
    }
    for (int64_t i = 0; i < R * d; ++i) h[i] *= mask[i];
  }

  cuda::EncoderSpec spec{c.sparse, c.input_dim, c.hidden, c.activation, c.dropout};
  cuda::EncoderGpu gpu(spec, R);
  gpu.upload(encoder_tensors(cpu));
  cuda::BatchUploader uploader(cuda::UploadOptions{{}, c.normalize});
  uploader.stage(inputs, nullptr);
  cudaStream_t stream{};
  HASTE_CUDA_CHECK(cudaStreamCreate(&stream));
  const cuda::DeviceBatch batch = uploader.acquire(stream);
  ASSERT_EQ(batch.B, B);
  HASTE_CUDA_CHECK(cudaMemset(gpu.h(), 0xff, B * d * sizeof(float)));
  HASTE_CUDA_CHECK(cudaMemset(gpu.hT(), 0xff, B * d * sizeof(bf16)));
  gpu.forward(batch, seed, stream);
  HASTE_CUDA_CHECK(cudaStreamSynchronize(stream));

  const std::vector<float> h_gpu = download(gpu.h(), B * d);
  const std::vector<bf16> hT_gpu = download(gpu.hT(), B * d);
  const std::vector<float> h_real(h_gpu.begin(), h_gpu.begin() + R * d);
  EXPECT_LT(relative_error(to_double(h_real), to_double(h)), 1e-5) << "h";
  int64_t mismatched = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t j = 0; j < d; ++j) {
      const float value = h_gpu[b * d + j];
      if (b >= R) mismatched += value != 0.0f;
      if (b < R && mask[b * d + j] == 0.0f) mismatched += value != 0.0f;
      mismatched +=
          __bfloat162float(hT_gpu[j * B + b]) != __bfloat162float(__float2bfloat16(value));
    }
  }
  EXPECT_EQ(mismatched, 0) << "padding rows, dropped elements or hT";

  // Backward from dh + dhT^T (what head and tail accumulate), through the same mask.
  const std::vector<float> dh = random.tensor<float>(B * d), dhT = random.tensor<float>(d * B);
  std::vector<float> dh_cpu(R * d);
  for (int64_t b = 0; b < R; ++b) {
    for (int64_t j = 0; j < d; ++j) {
      dh_cpu[b * d + j] = (dh[b * d + j] + dhT[j * B + b]) * mask[b * d + j];
    }
  }
  cpu.backward(inputs, act, dh_cpu);
  upload(gpu.dh(), dh);
  upload(gpu.dhT(), dhT);
  gpu.reserve_nonzeros(batch.input_nnz);  // fixes sparse_weight_grad() before it is poisoned
  for (const cuda::DeviceParameter& p : gpu.parameters()) {
    const int64_t n = p.row_sparse ? gpu.max_touched_rows() * p.shape[1]
                                   : std::accumulate(p.shape.begin(), p.shape.end(), int64_t{1},
                                                     std::multiplies<>());
    HASTE_CUDA_CHECK(cudaMemset(p.grad, 0xff, n * sizeof(float)));
  }
  gpu.backward(batch, stream);
  HASTE_CUDA_CHECK(cudaStreamSynchronize(stream));

  const auto parameters = gpu.parameters();
  for (size_t i = 0; i < cpu.layers().size(); ++i) {
    const model::DenseLayer& layer = cpu.layers()[i];
    const cuda::DeviceParameter& weight = parameters[2 * i];
    const cuda::DeviceParameter& bias = parameters[2 * i + 1];
    EXPECT_LT(relative_error(to_double(download(bias.grad, layer.out)), to_double(layer.dbias)),
              1e-5)
        << bias.name;
    if (!weight.row_sparse) {
      EXPECT_LT(relative_error(to_double(download(weight.grad, layer.in * layer.out)),
                               to_double(layer.dweight)),
                1e-5)
          << weight.name;
      continue;
    }
    const int32_t touched = download(gpu.touched_count(), 1)[0];
    const std::vector<int32_t> rows_gpu = download(gpu.touched_rows(), touched);
    const std::span<const int32_t> rows_cpu = cpu.touched_rows();
    EXPECT_EQ(rows_gpu, std::vector<int32_t>(rows_cpu.begin(), rows_cpu.end())) << "touched rows";
    const std::vector<float> grad_gpu = download(weight.grad, touched * layer.out);
    std::vector<float> grad_cpu;
    for (int32_t f : rows_cpu) {
      grad_cpu.insert(grad_cpu.end(), layer.dweight.begin() + int64_t{f} * layer.out,
                      layer.dweight.begin() + (int64_t{f} + 1) * layer.out);
    }
    EXPECT_LT(relative_error(to_double(grad_gpu), to_double(grad_cpu)), 1e-5) << weight.name;
  }
  HASTE_CUDA_CHECK(cudaStreamDestroy(stream));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, EncoderGpuTest,
    ::testing::Values(
        // sparse, F, max nnz/row, hidden, activation, dropout, rows, normalise
        Case{true, 5000, 60, {256}, Activation::relu, 0.0, 50, true},
        Case{true, 3000, 40, {130, 96}, Activation::tanh, 0.3, 40, false},  // unaligned widths
        Case{true, 20000, 600, {768}, Activation::relu, 0.1, 256, true},    // rows > 1 smem chunk
        Case{false, 200, 0, {256, 128}, Activation::relu, 0.2, 64, true},
        Case{false, 77, 0, {96}, Activation::tanh, 0.0, 33, false}));

// Batches as staged: padding rows, renumbered and sorted labels, two batches in flight.
TEST(BatchUploaderTest, StagesPaddedRenumberedBatches) {
  HASTE_REQUIRE_GPU();
  test_util::RandomTensors random(5);
  const int64_t N = 70, F = 500, L = 40;
  const CsrMatrix x = random_sparse(random, N, F, 30);
  const CsrMatrix labels = random.sparse_targets(N, L, 0.1);
  std::vector<int32_t> original_to_model(L);
  std::iota(original_to_model.begin(), original_to_model.end(), 0);
  std::reverse(original_to_model.begin(), original_to_model.end());
  cuda::BatchUploader uploader(cuda::UploadOptions{original_to_model, false});
  const std::vector<int64_t> first = {3, 9, 1}, second = {60, 61, 62, 63, 64, 65, 66, 67, 68,
                                                          69, 0,  1,  2,  3,  4,  5,  6,  7};
  uploader.stage({&x, nullptr, first}, &labels);
  uploader.stage({&x, nullptr, second}, &labels);
  EXPECT_THROW(uploader.stage({&x, nullptr, first}, &labels), Error);

  for (const auto& rows : {first, second}) {
    const cuda::DeviceBatch batch = uploader.acquire(nullptr);
    HASTE_CUDA_CHECK(cudaDeviceSynchronize());
    const auto R = static_cast<int64_t>(rows.size());
    EXPECT_EQ(batch.rows, R);
    EXPECT_EQ(batch.B, (R + 15) / 16 * 16);
    const std::vector<int64_t> indptr = download(batch.input_indptr, batch.B + 1);
    const std::vector<int64_t> label_indptr = download(batch.label_indptr, batch.B + 1);
    const std::vector<int32_t> indices = download(batch.input_indices, batch.input_nnz);
    const std::vector<int32_t> label_indices = download(batch.label_indices, batch.label_nnz);
    for (int64_t b = 0; b < batch.B; ++b) {
      const std::span<const int32_t> got(indices.data() + indptr[b], indptr[b + 1] - indptr[b]);
      const std::span<const int32_t> got_labels(label_indices.data() + label_indptr[b],
                                                label_indptr[b + 1] - label_indptr[b]);
      std::vector<int32_t> want, want_labels;
      if (b < R) {
        auto row = x.row_indices(rows[b]);
        want.assign(row.begin(), row.end());
        for (int32_t l : labels.row_indices(rows[b])) want_labels.push_back(original_to_model[l]);
        std::sort(want_labels.begin(), want_labels.end());
      }
      EXPECT_EQ(std::vector<int32_t>(got.begin(), got.end()), want) << "row " << b;
      EXPECT_EQ(std::vector<int32_t>(got_labels.begin(), got_labels.end()), want_labels)
          << "row " << b;
    }
  }
  EXPECT_THROW(uploader.acquire(nullptr), Error);
}

// Model -> GPU -> another model: the encoder tensors arrive unchanged.
TEST(EncoderGpuMirrorTest, RoundTripsThroughAModel) {
  HASTE_REQUIRE_GPU();
  const Dataset data = test_util::small_synthetic(120, 300, 48);
  ModelConfig config = test_util::tiny_config();
  config.hidden = {24, 16};
  const Model source = Model::build(config, data);
  config.seed = 99;
  Model target = Model::build(config, data);
  const cuda::EncoderGpu gpu = cuda::EncoderGpu::from_model(source, 64);
  gpu.download(target, nullptr);
  const auto want = source.float_tensors(), got = target.float_tensors();
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i].name.starts_with("encoder.")) {
      EXPECT_TRUE(std::equal(want[i].data.begin(), want[i].data.end(), got[i].data.begin()))
          << want[i].name;
    }
  }
}

}  // namespace
}  // namespace haste
