// The output layer's training step on the GPU (issue 6, DESIGN.md 2, 3, 7, 8), device-resident:
//   head (dense, labels 0..H-1):  z = h_head W_head^T + b  (cuBLAS, bf16 in, fp32 accumulate),
//                                 BCE loss and dz = (sigmoid(z) - y) / B (own kernel, sparse
//                                 targets), dW_head = dz^T h_head, db = column sums of dz,
//                                 dh_head += dz W_head (cuBLAS)
//   tail (group-shared, G*g slots): group_shared_fused_train (logits never reach memory)
//   update: OptimizerGpu (bf16 weights with stochastic rounding, fp32 biases and state); in
//           train_step the tail weights' update runs inside the fused kernel.
// The DENSE output layer (the quality baseline) is the same class with every label in the head.
//
// Same model as the CPU (include/haste/model.hpp): model label ids (head first, then tail slots
// group by group), the same parameter names and shapes (head.weight [H, d_head], head.bias [H],
// tail.weight [G*g, k], tail.bias [G*g], tail.indices [G, k]), private features (head reads
// h[:, d/2:d], tail h[:, 0:d/2]). upload()/download() move them to and from a Model (weights
// rounded to bf16 on the way up).
//
// Layouts on the device: the input is hT [d, B] bf16 (feature-major, as the tail kernels and
// EncoderGpu::hT() have it); the gradient of h is ACCUMULATED into dhT [d, B] fp32 (the caller
// zeroes it). Targets are the batch's CSR label rows in model ids, columns increasing in a row.
// B must be a multiple of 16 (the tail kernels'): a short batch of `rows` real rows is padded
// with rows of h 0 and no targets, which get no loss and no gradient (the loss is the mean over
// the real rows, as on the CPU).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <haste/cuda/group_shared_topk.hpp>
#include <haste/cuda/optimizer_gpu.hpp>
#include <haste/dst.hpp>
#include <haste/group_shared.hpp>
#include <haste/model.hpp>
#include <haste/optimizer.hpp>
#include <haste/shard/label_shards.hpp>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace haste::cuda {

// What fixes every tensor shape of the output layer.
struct OutputLayerShape {
  int64_t d = 0;       // width of h
  int64_t H = 0;       // head labels
  int64_t L_tail = 0;  // real tail labels (<= G * g; the rest are padding slots)
  int64_t G = 0, g = 1, k = 0;
  bool private_features = false;

  int64_t d_head() const { return private_features ? d - d / 2 : d; }
  int64_t d_tail() const { return private_features ? d / 2 : d; }
  int64_t head_offset() const { return private_features ? d / 2 : 0; }
  int64_t labels() const { return H + L_tail; }  // L
  GroupSharedShape tail() const { return {d_tail(), G, g, k}; }

  static OutputLayerShape of(const Model& model);
  // The layer of `shard`'s labels of the model (a label-sharded run's part on one GPU).
  static OutputLayerShape of(const Model& model, const shard::LabelShard& shard);
  // The part of this layer that `shard` (of split_labels(H, G, P)) holds.
  OutputLayerShape part(const shard::LabelShard& shard) const;
  // A HASTE layer for L labels: H head labels (rounded up to a multiple of g), the rest in
  // groups of g with fan-in k. H = L gives the dense layer.
  static OutputLayerShape haste(int64_t d, int64_t L, int64_t H, int64_t g, int64_t k);
  static OutputLayerShape dense(int64_t d, int64_t L) { return haste(d, L, L, 1, 0); }
};

// Device bytes by part (DESIGN.md 12: output_layer_bytes = weights + gradients + optimizer
// state, indices included with the weights).
struct OutputLayerMemory {
  int64_t head_weights = 0;  // head.weight (bf16) + head.bias (fp32)
  int64_t tail_weights = 0;  // tail.weight (bf16) + tail.bias (fp32)
  int64_t tail_indices = 0;  // tail.indices (int32)
  int64_t gradients = 0;     // of the four parameters (weights bf16, biases fp32)
  int64_t optimizer_state = 0;
  int64_t activations = 0;  // head logits / dz [B, H] bf16 and step scratch, at max_batch

  int64_t output_layer_bytes() const {
    return head_weights + tail_weights + tail_indices + gradients + optimizer_state;
  }
  int64_t total() const { return output_layer_bytes() + activations; }
  std::vector<std::pair<std::string, int64_t>> parts() const;  // for printing, in this order
};

// A batch's targets on the device: B CSR rows in model label ids; `values` null for a pattern
// matrix (every target 1), else soft targets in [0, 1].
struct LabelTargetsDevice {
  const int64_t* indptr = nullptr;   // [B + 1]
  const int32_t* indices = nullptr;  // [nnz]
  const float* values = nullptr;     // [nnz] or null
  int64_t nnz = 0;                   // on the host: sizes the head's scratch
};

// A step's batch as DST's gradient regrowth reads it: hT [d, B] (the tail's features first)
// and the targets in model label ids, all on the device.
struct TailGradientBatch {
  int64_t B = 0;
  const bf16* hT = nullptr;
  LabelTargetsDevice targets;
};

class OutputLayerGpu {
 public:
  // Parameters allocated (uninitialised: upload() or randomize() next), optimizer state zero.
  // `max_batch` sizes the head's logits. `seed` feeds stochastic rounding. Throws before
  // allocating if the tail's shape is not one the fused kernel takes.
  OutputLayerGpu(const OutputLayerShape& shape, const OptimizerConfig& optimizer, int64_t max_batch,
                 uint64_t seed = 0);
  // Shape from the model, values uploaded from it.
  static OutputLayerGpu from_model(const Model& model, const OptimizerConfig& optimizer,
                                   int64_t max_batch, uint64_t seed = 0);
  OutputLayerGpu(OutputLayerGpu&&) noexcept;
  OutputLayerGpu& operator=(OutputLayerGpu&&) noexcept;
  ~OutputLayerGpu();

  // Host <-> device, synchronous: head.*, tail.* of the model (others skipped; shapes must
  // match this layer's). With a shard: the shard's rows of them (this layer being
  // OutputLayerShape::of(model, shard)); shards download into disjoint rows, so the ranks of a
  // sharded run may download at the same time.
  void upload(const Model& model);
  void download(Model& model) const;
  void upload(const Model& model, const shard::LabelShard& shard);
  void download(Model& model, const shard::LabelShard& shard) const;
  // Random weights (uniform, variance 1 / fan-in; padding slots zero), zero biases, random
  // sorted distinct tail indices: for benchmarks, without host-sized tensors.
  void randomize(uint64_t seed);

  // Loss (added to *loss, a device double the caller zeroes), every gradient of the layer
  // (overwritten), and the gradient of h added to dhT, for a batch of B rows of which the first
  // `rows` are real (the others pad it).
  void forward_backward(int64_t B, int64_t rows, const bf16* hT, const LabelTargetsDevice& targets,
                        float* dhT, double* loss, cudaStream_t stream);
  // One optimizer update from the last forward_backward's gradients at learning rate `lr`.
  void update(double lr, cudaStream_t stream);
  // The training step: forward_backward, then update at `lr`, with the same result, except
  // that for B <= kFusedTrainRows the tail weights are updated inside the fused kernel as
  // their gradient is complete (include/haste/cuda/group_shared_fused.hpp): the tail's weight
  // gradient is then never written (tail_weight_grad() does not hold it) and the update's
  // memory traffic overlaps the kernel's work.
  void train_step(int64_t B, int64_t rows, const bf16* hT, const LabelTargetsDevice& targets,
                  float* dhT, double* loss, double lr, cudaStream_t stream);

  // The `topk.k()` best labels of each of B rows of hT (B <= max_batch, any B >= 1) into
  // scores / labels [B, k] (device, best first): the head's logits by cuBLAS, the tail's fused
  // (include/haste/cuda/group_shared_topk.hpp). `label_map` [L] (device) turns model ids into
  // original ids; null returns model ids.
  void predict_topk(int64_t B, const bf16* hT, TopKGpu& topk, const int32_t* label_map,
                    float* scores, int32_t* labels, cudaStream_t stream);

  // DST on the tail (include/haste/dst.hpp), on the device: the slot scores are computed there,
  // the pruned and regrown slots are chosen there with haste::rewire_tail_indices' rules
  // (src/cuda/dst_kernels.cu; random regrowth draws the CPU's random streams and gives its
  // choice bit for bit), and the weights and optimizer state move with their slots there.
  // Synchronises `stream`. Gradient regrowth reads `batch` (the last step's hT and targets): the
  // fused kernel never writes the tail's dZ, so the unfused forward recomputes the logits (with
  // the weights after the step's update, where the CPU uses the step's own), stretch by stretch
  // of labels with the product dZ^T h by cuBLAS. Random regrowth ignores `batch`.
  // A label-sharded run's layer (OutputLayerShape::part) passes `part`: its groups' place in
  // the whole tail and the ranks' communicator ON HOST MEMORY (a HostStagedCommunicator over
  // the rank's NCCL one, or a TcpGroup), through which the global prune rule's scores are
  // all-gathered on the host for the threshold; each part then chooses on its device (a fan-in
  // above 128 or a width above 1024 chooses on the host from the scores). Every rank calls it
  // together, and the union of the ranks' rewirings is the one-GPU rewiring of the whole tail
  // (changed_slots counts all ranks' slots).
  DstResult rewire_tail(DstPrune prune, DstRegrow regrow, double fraction, uint64_t seed,
                        const TailGradientBatch& batch, cudaStream_t stream,
                        const TailPart& part = {});

  const OutputLayerShape& shape() const;
  OutputLayerMemory memory() const;
  OptimizerGpu& optimizer();

  // Device tensors (bf16 weights and gradients, fp32 biases), for tests and DST. The tail's
  // weight gradient is allocated at construction when max_batch > kFusedTrainRows, else by the
  // first forward_backward (null before).
  bf16* head_weight();
  float* head_bias();
  bf16* tail_weight();
  float* tail_bias();
  int32_t* tail_indices();
  const bf16* head_weight_grad() const;
  const float* head_bias_grad() const;
  const bf16* tail_weight_grad() const;
  const float* tail_bias_grad() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace haste::cuda
