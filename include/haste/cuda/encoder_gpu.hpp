// The encoder of the CPU model (src/model/encoder.hpp) on the GPU (issue 6): input batch ->
// h [B, d], and the backward pass from dh to every encoder gradient. Same parameters (names,
// shapes, fp32) as haste::Model, so the encoder moves between the two with upload/download and
// checkpoints stay CPU-format:
//   encoder.<i>.weight [in, out], encoder.<i>.bias [out];  a_0 = act(x W_0 + b_0),
//   a_i = act(a_{i-1} W_i + b_i), h = dropout(a_last).
// Layer 0 on sparse (tf-idf) rows is an embedding bag (own kernel: each row sums the rows of W_0
// of its features); dense rows and the further layers run on cuBLAS (fp32, no tf32).
//
// Outputs for the output layer, after forward():
//   h()   [B, d] fp32 row-major (the head's input)   hT() [d, B] bf16 (the tail kernels' layout)
//   dh()  [B, d] fp32,  dhT() [d, B] fp32: both ZEROED by forward(); the head and the tail add
//   the gradient of the loss with respect to h into either one, backward() reads their sum.
// Padding rows (b >= batch.rows) of h and hT are zero, and their gradient is ignored.
//
// Dropout (training only) is the CPU model's inverted dropout with the same masks: element
// (b, j) is dropped iff the j-th draw of Rng(hash_key(dropout_seed, b)) (src/data/random.hpp) is
// below p, kept ones are scaled by 1 / (1 - p). The mask is recomputed in backward, not stored.
//
// The gradient of encoder.0.weight for sparse inputs lives only in the batch's features:
// touched_rows() are their ids, sorted and distinct (as Model::touched_rows on the CPU), found
// on the device; touched_count() is their number, also on the device (no host sync). Row u of
// sparse_weight_grad() [max rows, out] is the gradient of row touched_rows()[u] of the weight.
//
// Inputs are read as the batch holds them: BatchUploader already scales rows to unit norm when
// the model normalises its inputs (ModelConfig::normalize_input).
//
// Every call is asynchronous on `stream` (cuBLAS included); buffers are sized for `max_batch`
// rows. The sparse scratch (and with it sparse_weight_grad()) grows with the batch's nonzeros;
// growing synchronizes the device and moves sparse_weight_grad(): reserve_nonzeros() up front
// keeps the pointer fixed.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <haste/cuda/batch_upload.hpp>
#include <haste/model.hpp>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace haste::cuda {

using bf16 = __nv_bfloat16;

// What fixes the encoder's shape: the model's input kind and width, widths, activation, dropout.
struct EncoderSpec {
  bool sparse_input = true;
  int64_t input_dim = 0;        // F or D
  std::vector<int64_t> hidden;  // layer widths, the last is d
  Activation activation = Activation::relu;
  double dropout = 0.0;

  static EncoderSpec of(const Model& model);
};

// A device parameter and its gradient, in Model::parameters() order and naming. For the sparse
// input layer's weight `grad` is sparse_weight_grad() (rows of touched_rows(), see above).
struct DeviceParameter {
  std::string name;
  std::vector<int64_t> shape;
  float* value = nullptr;
  float* grad = nullptr;
  bool row_sparse = false;
};

// Device bytes by part, for the start-up memory report: parameters (fp32 weights and biases),
// their gradients (for a sparse input layer: the rows of the largest batch so far) and the
// activations and scratch of a max_batch-row step.
struct EncoderMemory {
  int64_t weights = 0, gradients = 0, activations = 0;
};

class EncoderGpu {
 public:
  EncoderGpu(const EncoderSpec& spec, int64_t max_batch);
  // Shapes from the model, values uploaded from it.
  static EncoderGpu from_model(const Model& model, int64_t max_batch);
  EncoderGpu(EncoderGpu&&) noexcept;
  EncoderGpu& operator=(EncoderGpu&&) noexcept;
  ~EncoderGpu();

  // Host <-> device: every tensor named encoder.* of `tensors` (others are skipped; a missing
  // encoder tensor or a shape mismatch throws). Synchronous.
  void upload(std::span<const NamedTensor<const float>> tensors);
  void upload(const Model& model);
  void download(Model& model, cudaStream_t stream) const;

  const EncoderSpec& spec() const;
  int64_t output_dim() const;  // d
  int64_t max_batch() const;   // padded
  EncoderMemory memory() const;

  // h = encoder(batch) (+ dropout when `dropout_seed` is set and spec().dropout > 0); zeroes dh
  // and dhT. The batch must stay valid until backward() is enqueued.
  void forward(const DeviceBatch& batch, std::optional<uint64_t> dropout_seed, cudaStream_t stream);
  // Every encoder gradient (overwritten) from dh + dhT^T of the last forward's batch.
  void backward(const DeviceBatch& batch, cudaStream_t stream);
  // Sizes the sparse scratch for batches of up to `nnz` input nonzeros (no-op for dense inputs).
  void reserve_nonzeros(int64_t nnz);

  float* h();    // [B, d]
  bf16* hT();    // [d, B]
  float* dh();   // [B, d]
  float* dhT();  // [d, B]

  std::vector<DeviceParameter> parameters();
  // Sparse inputs only (null otherwise), valid after backward():
  const int32_t* touched_rows() const;   // [max_touched_rows()], first *touched_count() valid
  const int32_t* touched_count() const;  // one device int
  float* sparse_weight_grad();           // [max_touched_rows(), d_0]
  int64_t max_touched_rows() const;      // capacity: at least the last batch's nonzeros

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace haste::cuda
