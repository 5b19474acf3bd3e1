// Batch staging for the GPU (include/haste/cuda/batch_upload.hpp). Each slot's batch is one
// contiguous block, laid out the same in pinned host memory and on the device, so that a batch
// is a single asynchronous copy.
#include <algorithm>
#include <cmath>
#include <haste/cuda/batch_upload.hpp>
#include <haste/cuda/cuda_check.hpp>
#include <haste/error.hpp>

namespace haste::cuda {
namespace {

constexpr int64_t kRowMultiple = 16;  // what the tail kernels take
constexpr size_t kAlign = 256;

size_t align(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// Byte offsets of a batch's arrays in its block.
struct Layout {
  size_t input_indptr = 0, input_indices = 0, input_values = 0, dense = 0, label_indptr = 0,
         label_indices = 0, total = 0;

  Layout(int64_t B, int64_t input_nnz, int64_t dense_values, bool labels, int64_t label_nnz) {
    size_t at = 0;
    auto take = [&](size_t bytes) {
      const size_t offset = at;
      at += align(bytes);
      return offset;
    };
    input_indptr = take(dense_values > 0 ? 0 : (B + 1) * sizeof(int64_t));
    input_indices = take(input_nnz * sizeof(int32_t));
    input_values = take(input_nnz * sizeof(float));
    dense = take(dense_values * sizeof(float));
    label_indptr = take(labels ? (B + 1) * sizeof(int64_t) : 0);
    label_indices = take(label_nnz * sizeof(int32_t));
    total = at;
  }
};

template <typename T>
T* at(void* base, size_t offset) {
  return reinterpret_cast<T*>(static_cast<char*>(base) + offset);
}

// The CPU model's row scale (src/model/encoder.cpp): 1 / ||row|| in double, rounded to float;
// 1 for an all-zero row.
float unit_norm_scale(std::span<const float> row) {
  double sum = 0;
  for (float v : row) sum += double{v} * v;
  return sum > 0 ? static_cast<float>(1.0 / std::sqrt(sum)) : 1.0f;
}

}  // namespace

TailTargetsDevice DeviceBatch::tail_targets(TailLabelRange range) const {
  check(label_indptr != nullptr, "GPU batch: the batch was staged without labels");
  return {label_indptr, label_indices, nullptr, range};
}

UploadOptions UploadOptions::of(const Model& model) {
  UploadOptions options;
  options.normalize_rows = model.config().normalize_input;
  const std::span<const int32_t> model_to_original = model.model_to_original();
  options.original_to_model.assign(model_to_original.size(), 0);
  for (size_t m = 0; m < model_to_original.size(); ++m) {
    options.original_to_model[model_to_original[m]] = static_cast<int32_t>(m);
  }
  return options;
}

UploadOptions UploadOptions::of(const Model& model, const shard::LabelShard& shard) {
  UploadOptions options = of(model);
  for (int32_t& id : options.original_to_model) {
    id = shard::shard_label(shard, id, model.shape().head_labels, model.shape().group_size);
  }
  return options;
}

BatchUploader::BatchUploader(UploadOptions options) : options_(std::move(options)) {
  HASTE_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
  for (Slot& slot : slots_) {
    HASTE_CUDA_CHECK(cudaEventCreateWithFlags(&slot.copied, cudaEventDisableTiming));
    HASTE_CUDA_CHECK(cudaEventCreateWithFlags(&slot.consumed, cudaEventDisableTiming));
  }
}

BatchUploader::~BatchUploader() {
  // A destructor must not throw: failures here only leak.
  cudaStreamSynchronize(copy_stream_);
  for (Slot& slot : slots_) {
    cudaEventSynchronize(slot.consumed);
    cudaFreeHost(slot.host);
    cudaFree(slot.device);
    cudaEventDestroy(slot.copied);
    cudaEventDestroy(slot.consumed);
  }
  cudaStreamDestroy(copy_stream_);
}

void BatchUploader::reserve(Slot& slot, size_t bytes) {
  if (bytes <= slot.capacity) return;
  HASTE_CUDA_CHECK(cudaEventSynchronize(slot.consumed));
  HASTE_CUDA_CHECK(cudaFreeHost(slot.host));
  HASTE_CUDA_CHECK(cudaFree(slot.device));
  slot.host = slot.device = nullptr;
  slot.capacity = 0;
  // Headroom, so that batches of slowly growing size do not reallocate every step.
  const size_t capacity = align(bytes + bytes / 2);
  HASTE_CUDA_CHECK(cudaMallocHost(&slot.host, capacity));
  HASTE_CUDA_CHECK(cudaMalloc(&slot.device, capacity));
  slot.capacity = capacity;
}

void BatchUploader::stage(const Dataset& data, std::span<const int64_t> rows) {
  stage(InputRows::of(data, rows), &data.labels);
}

void BatchUploader::stage(const InputRows& inputs, const CsrMatrix* labels) {
  check(inputs.sparse != nullptr || inputs.dense != nullptr, "GPU batch: the batch has no inputs");
  auto free_slot = std::find_if(slots_.begin(), slots_.end(),
                                [](const Slot& s) { return s.state == Slot::State::free; });
  check(free_slot != slots_.end(),
        "GPU batch: two batches are staged or in use already; acquire() one before staging more");
  Slot& slot = *free_slot;
  // The slot's host memory may still be the source of its previous copy.
  HASTE_CUDA_CHECK(cudaEventSynchronize(slot.copied));

  const int64_t rows = inputs.size(),
                B = std::max(kRowMultiple, (rows + kRowMultiple - 1) / kRowMultiple * kRowMultiple);
  const CsrMatrix* x = inputs.sparse;
  int64_t input_nnz = 0, label_nnz = 0;
  for (int64_t row : inputs.rows) {
    if (x) input_nnz += x->indptr[row + 1] - x->indptr[row];
    if (labels) label_nnz += labels->indptr[row + 1] - labels->indptr[row];
  }
  check(!x || x->values.size() == x->indices.size(),
        "GPU batch: the sparse inputs have no values (a pattern matrix)");
  const int64_t D = x ? 0 : inputs.dense->cols;
  const Layout layout(B, input_nnz, B * D, labels != nullptr, label_nnz);
  reserve(slot, layout.total);

  void* host = slot.host;
  DeviceBatch& batch = slot.batch;
  batch = {};
  batch.rows = rows;
  batch.B = B;
  batch.input_cols = x ? x->cols : D;
  if (x) {
    auto* indptr = at<int64_t>(host, layout.input_indptr);
    auto* indices = at<int32_t>(host, layout.input_indices);
    auto* values = at<float>(host, layout.input_values);
    indptr[0] = 0;
    for (int64_t b = 0; b < B; ++b) {
      int64_t n = 0;
      if (b < rows) {
        auto row_indices = x->row_indices(inputs.rows[b]);
        auto row_values = x->row_values(inputs.rows[b]);
        const float scale = options_.normalize_rows ? unit_norm_scale(row_values) : 1.0f;
        n = static_cast<int64_t>(row_indices.size());
        std::copy(row_indices.begin(), row_indices.end(), indices + indptr[b]);
        std::transform(row_values.begin(), row_values.end(), values + indptr[b],
                       [scale](float v) { return v * scale; });
      }
      indptr[b + 1] = indptr[b] + n;
    }
    batch.input_indptr = at<int64_t>(slot.device, layout.input_indptr);
    batch.input_indices = at<int32_t>(slot.device, layout.input_indices);
    batch.input_values = at<float>(slot.device, layout.input_values);
    batch.input_nnz = input_nnz;
  } else {
    auto* dense = at<float>(host, layout.dense);
    for (int64_t b = 0; b < rows; ++b) {
      auto row = inputs.dense->row(inputs.rows[b]);
      const float scale = options_.normalize_rows ? unit_norm_scale(row) : 1.0f;
      std::transform(row.begin(), row.end(), dense + b * D, [scale](float v) { return v * scale; });
    }
    std::fill(dense + rows * D, dense + B * D, 0.0f);
    batch.dense = at<float>(slot.device, layout.dense);
  }
  if (labels) {
    const auto& map = options_.original_to_model;
    check(map.empty() || static_cast<int64_t>(map.size()) == labels->cols,
          "GPU batch: the labels have {} columns but the model has {} labels", labels->cols,
          map.size());
    auto* indptr = at<int64_t>(host, layout.label_indptr);
    auto* indices = at<int32_t>(host, layout.label_indices);
    indptr[0] = 0;
    for (int64_t b = 0; b < B; ++b) {
      int32_t* first = indices + indptr[b];
      int32_t* last = first;
      if (b < rows) {
        for (int32_t label : labels->row_indices(inputs.rows[b])) {
          const int32_t id = map.empty() ? label : map[label];
          if (id >= 0) *last++ = id;
        }
        std::sort(first, last);
      }
      indptr[b + 1] = indptr[b] + (last - first);
    }
    batch.label_indptr = at<int64_t>(slot.device, layout.label_indptr);
    batch.label_indices = at<int32_t>(slot.device, layout.label_indices);
    batch.label_nnz = indptr[B];
    batch.label_cols = labels->cols;
  }

  // The device memory may still be read by the step that used this slot last.
  HASTE_CUDA_CHECK(cudaStreamWaitEvent(copy_stream_, slot.consumed));
  HASTE_CUDA_CHECK(
      cudaMemcpyAsync(slot.device, host, layout.total, cudaMemcpyHostToDevice, copy_stream_));
  HASTE_CUDA_CHECK(cudaEventRecord(slot.copied, copy_stream_));
  slot.state = Slot::State::staged;
  slot.order = staged_count_++;
}

DeviceBatch BatchUploader::acquire(cudaStream_t compute) {
  if (in_use_) {
    HASTE_CUDA_CHECK(cudaEventRecord(in_use_->consumed, compute));
    in_use_->state = Slot::State::free;
    in_use_ = nullptr;
  }
  Slot* next = nullptr;
  for (Slot& slot : slots_) {
    if (slot.state == Slot::State::staged && (!next || slot.order < next->order)) next = &slot;
  }
  check(next != nullptr, "GPU batch: acquire() with no batch staged; call stage() first");
  HASTE_CUDA_CHECK(cudaStreamWaitEvent(compute, next->copied));
  next->state = Slot::State::in_use;
  in_use_ = next;
  return next->batch;
}

}  // namespace haste::cuda
