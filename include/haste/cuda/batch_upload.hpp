// Mini-batches on the GPU (issue 6): a batch's input rows (CSR tf-idf rows or dense rows) and
// label rows are gathered into pinned host memory and copied on a copy stream of their own, so
// that the next batch's upload overlaps the current training step.
//
// The batch is padded to B = a multiple of 16 rows (what the tail kernels take): padding rows
// have no input features (dense: zero rows) and no labels. Labels are renumbered to model label
// ids (head labels first, see include/haste/model.hpp) and sorted within each row, so that
// tail_targets() is what group_shared_fused_train reads; input rows are scaled to unit norm
// when the model normalises its inputs, exactly as the CPU model scales them.
//
// Use, one step at a time (two slots: the batch being consumed and the one being uploaded):
//   uploader.stage(first);
//   for each step:
//     DeviceBatch batch = uploader.acquire(stream);   // stream waits for the batch's copy
//     ... enqueue the step's work reading `batch` on `stream` ...
//     if (more) uploader.stage(next);                  // host gather + copy, overlapping the step
// A batch's device memory stays valid until the acquire() after the one that returned it, so
// every kernel reading it must be enqueued (on the stream passed to that acquire) by then.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <haste/cuda/group_shared_fused.hpp>
#include <haste/dataset.hpp>
#include <haste/model.hpp>
#include <haste/shard/label_shards.hpp>
#include <haste/sparse.hpp>
#include <span>
#include <vector>

namespace haste::cuda {

// Device views of one staged batch. Row b < rows is input row inputs.rows[b]; rows .. B-1 pad.
struct DeviceBatch {
  int64_t rows = 0;        // real rows
  int64_t B = 0;           // padded rows, a multiple of 16
  int64_t input_cols = 0;  // F (sparse) or D (dense)
  // Sparse inputs: CSR [B, F], indices increasing within a row; null for dense inputs.
  const int64_t* input_indptr = nullptr;   // [B + 1]
  const int32_t* input_indices = nullptr;  // [input_nnz]
  const float* input_values = nullptr;     // [input_nnz]
  int64_t input_nnz = 0;
  // Dense inputs: [B, D] row-major; null for sparse inputs.
  const float* dense = nullptr;
  // Labels: CSR [B, label_cols] pattern in model label ids; null when staged without labels.
  const int64_t* label_indptr = nullptr;   // [B + 1]
  const int32_t* label_indices = nullptr;  // [label_nnz]
  int64_t label_nnz = 0;
  int64_t label_cols = 0;

  bool sparse_input() const { return input_indptr != nullptr; }
  // The labels as the fused tail kernel reads them (throws if the batch has no labels).
  TailTargetsDevice tail_targets(TailLabelRange range) const;
};

// How rows are prepared on the host, as Model does before its encoder.
struct UploadOptions {
  // Label renumbering; empty: labels used as they are. A label mapped to -1 is left out (it
  // belongs to another label shard).
  std::vector<int32_t> original_to_model;
  bool normalize_rows = false;  // scale each input row to unit L2 norm

  // The model's label permutation and ModelConfig::normalize_input.
  static UploadOptions of(const Model& model);
  // The same for the GPU holding `shard` of the model's labels: its labels renumbered as that
  // shard's OutputLayerGpu numbers them (its head labels, then its tail slots), others left out.
  static UploadOptions of(const Model& model, const shard::LabelShard& shard);
};

class BatchUploader {
 public:
  explicit BatchUploader(UploadOptions options = {});
  BatchUploader(const BatchUploader&) = delete;
  BatchUploader& operator=(const BatchUploader&) = delete;
  ~BatchUploader();

  // Gathers rows `inputs.rows` of the inputs and (unless null) of `labels` into a free slot's
  // pinned memory and starts the copy. Returns once the host gather is done. Throws if both
  // slots hold batches that were not acquired yet, or a label is outside the label space.
  void stage(const InputRows& inputs, const CsrMatrix* labels);
  void stage(const Dataset& data, std::span<const int64_t> rows);

  // The oldest staged batch, with `compute` made to wait for its copy. Ends the use of the
  // batch returned by the previous acquire (its last reader is what `compute` holds now).
  DeviceBatch acquire(cudaStream_t compute);

 private:
  struct Slot {
    enum class State { free, staged, in_use } state = State::free;
    size_t capacity = 0;   // bytes of host and device memory
    void* host = nullptr;  // pinned
    void* device = nullptr;
    cudaEvent_t copied{};    // the upload has finished
    cudaEvent_t consumed{};  // the compute stream no longer reads the device memory
    DeviceBatch batch;       // device views, valid once staged
    uint64_t order = 0;      // staging order: acquire takes the oldest
  };
  void reserve(Slot& slot, size_t bytes);

  UploadOptions options_;
  std::array<Slot, 2> slots_;
  Slot* in_use_ = nullptr;
  uint64_t staged_count_ = 0;
  cudaStream_t copy_stream_{};
};

}  // namespace haste::cuda
