// The training loop on the GPU (include/haste/trainer_device.hpp): Trainer::fit's loop with the
// step on the device. Per step, on one compute stream:
//   batch (uploaded while the previous step ran) -> EncoderGpu::forward -> h, hT
//   OutputLayerGpu::train_step (head GEMMs + fused tail; loss into one device double,
//   gradient of h into dhT; the output layer's update, the tail weights' inside the fused
//   kernel) -> EncoderGpu::backward -> the encoder's update (OptimizerGpu, lazy rows for a
//   sparse input layer)
// DST rewires the tail through the host when due (OutputLayerGpu::rewire_tail).
// The host waits only for the progress line every kProgressSteps steps and at the epoch's end,
// where the test set is ranked on the device (fused top-k) and the model and optimizer state
// are downloaded for checkpoints.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <haste/cuda/batch_upload.hpp>
#include <haste/cuda/cuda_check.hpp>
#include <haste/cuda/device_buffer.hpp>
#include <haste/cuda/device_memory.hpp>
#include <haste/cuda/encoder_gpu.hpp>
#include <haste/cuda/group_shared_topk.hpp>
#include <haste/cuda/output_layer_gpu.hpp>
#include <haste/device.hpp>
#include <haste/error.hpp>
#include <haste/progress.hpp>
#include <haste/trainer_device.hpp>
#include <numeric>
#include <optional>

#include "cuda/gpu_train_loop.hpp"

namespace haste {

using cuda::kProgressSteps;
using cuda::kRowMultiple;
using cuda::seconds_since;

namespace {

// Ranks datasets on the device as Model::predict does on the host (original label ids, best
// first, logits as scores): batches of the training batch size through the encoder (no
// dropout) and OutputLayerGpu::predict_topk. Its own uploader, so the training one's slots are
// left alone.
class DeviceRanker {
 public:
  DeviceRanker(const Model& model, int k, int64_t batch_rows, int64_t max_batch)
      : uploader_(cuda::UploadOptions::of(model)),
        topk_(k),
        batch_rows_(batch_rows),
        label_count_(model.shape().num_labels),
        scores_(max_batch * k),
        labels_(max_batch * k),
        label_map_(std::vector<int32_t>(model.model_to_original().begin(),
                                        model.model_to_original().end())) {}

  Rankings rank(const Dataset& data, cuda::EncoderGpu& encoder, cuda::OutputLayerGpu& output,
                cudaStream_t stream) {
    const int64_t N = data.dense.cols > 0 ? data.dense.rows : data.features.rows;
    std::vector<int64_t> order(N);
    std::iota(order.begin(), order.end(), 0);
    auto inputs_at = [&](int64_t first) {
      return InputRows::of(
          data, std::span<const int64_t>(order.data() + first, std::min(batch_rows_, N - first)));
    };
    const int k = topk_.k();
    std::vector<float> scores(scores_.size());
    std::vector<int32_t> labels(labels_.size());
    Rankings rankings;
    rankings.cols = label_count_;
    if (N > 0) uploader_.stage(inputs_at(0), nullptr);
    for (int64_t first = 0; first < N; first += batch_rows_) {
      const cuda::DeviceBatch batch = uploader_.acquire(stream);
      encoder.forward(batch, std::nullopt, stream);
      output.predict_topk(batch.B, encoder.hT(), topk_, label_map_.data(), scores_.data(),
                          labels_.data(), stream);
      if (first + batch_rows_ < N) uploader_.stage(inputs_at(first + batch_rows_), nullptr);
      const size_t count = static_cast<size_t>(batch.rows * k);
      HASTE_CUDA_CHECK(cudaMemcpyAsync(scores.data(), scores_.data(), count * sizeof(float),
                                       cudaMemcpyDeviceToHost, stream));
      HASTE_CUDA_CHECK(cudaMemcpyAsync(labels.data(), labels_.data(), count * sizeof(int32_t),
                                       cudaMemcpyDeviceToHost, stream));
      HASTE_CUDA_CHECK(cudaStreamSynchronize(stream));
      for (int64_t r = 0; r < batch.rows; ++r) {
        const auto row_labels = std::span<const int32_t>(labels).subspan(r * k, k);
        // Rows with fewer than k labels end with label -1.
        const auto real = static_cast<size_t>(std::find(row_labels.begin(), row_labels.end(), -1) -
                                              row_labels.begin());
        rankings.append_row(row_labels.first(real),
                            std::span<const float>(scores).subspan(r * k, real));
      }
    }
    return rankings;
  }

 private:
  cuda::BatchUploader uploader_;
  cuda::TopKGpu topk_;
  int64_t batch_rows_;
  int64_t label_count_;
  cuda::DeviceBuffer<float> scores_;
  cuda::DeviceBuffer<int32_t> labels_;
  cuda::DeviceBuffer<int32_t> label_map_;
};

}  // namespace

std::string gpu_training_unsupported(const Model& model, const TrainConfig& config) {
  const GpuInventory inventory = detect_gpus();
  if (inventory.gpus.empty()) return inventory.unavailable_reason;
  if (config.top_k > cuda::kMaxTopK) {
    return fmt::format("top_k = {} is above the GPU's largest, {}", config.top_k, cuda::kMaxTopK);
  }
  try {
    const cuda::OutputLayerShape shape = cuda::OutputLayerShape::of(model);
    if (shape.G > 0) {
      cuda::check_supported(shape.tail(), kRowMultiple);
      check(shape.g > 1, "the GPU tail needs g > 1");
    }
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void fit_on_gpu(Trainer& trainer, Model& model, const Dataset& train, const Dataset* test,
                const std::function<void(const EpochReport&)>& on_epoch_end) {
  const TrainConfig& config = trainer.config();
  const int64_t N = train.num_points();
  check(N > 0, "train: the training set has no rows");
  int device = 0;
  HASTE_CUDA_CHECK(cudaGetDevice(&device));
  cuda::reset_peak_device_memory(device);  // this run's high-water mark, printed at the end
  const int64_t max_batch = (config.batch_size + kRowMultiple - 1) / kRowMultiple * kRowMultiple;
  const int64_t per_epoch = trainer.steps_per_epoch(N);
  const int64_t total_steps = per_epoch * config.epochs;
  const std::optional<uint64_t> no_dropout;
  const bool dropout = model.config().dropout > 0;
  std::vector<double> propensities;
  if (test != nullptr && config.eval_each_epoch) propensities = jain_propensities(train.labels);

  cudaStream_t stream{};
  HASTE_CUDA_CHECK(cudaStreamCreate(&stream));
  struct StreamGuard {
    cudaStream_t s;
    ~StreamGuard() { cudaStreamDestroy(s); }
  } guard{stream};
  cuda::EncoderGpu encoder = cuda::EncoderGpu::from_model(model, max_batch);
  cuda::OutputLayerGpu output =
      cuda::OutputLayerGpu::from_model(model, config.optimizer, max_batch, config.seed);
  cuda::EncoderUpdate encoder_update(config.optimizer, config.seed + 1, encoder);
  encoder_update.optimizer.upload(trainer.optimizer());
  output.optimizer().upload(trainer.optimizer());
  const cuda::EncoderMemory encoder_memory = encoder.memory();
  fmt::print(
      "GPU encoder: weights {:.1f} MB; gradients {:.1f} MB; optimizer state {:.1f} MB; "
      "activations and scratch {:.1f} MB\n",
      static_cast<double>(encoder_memory.weights) * 1e-6,
      static_cast<double>(encoder_memory.gradients) * 1e-6,
      static_cast<double>(encoder_update.optimizer.state_bytes()) * 1e-6,
      static_cast<double>(encoder_memory.activations) * 1e-6);
  fmt::print("GPU output layer:");
  for (const auto& [part, bytes] : output.memory().parts()) {
    fmt::print(" {} {:.1f} MB;", part, static_cast<double>(bytes) * 1e-6);
  }
  fmt::print("\n");
  cuda::BatchUploader uploader(cuda::UploadOptions::of(model));
  cuda::DeviceBuffer<double> loss(1);
  std::optional<DeviceRanker> ranker;
  if (test != nullptr && config.eval_each_epoch) {
    ranker.emplace(model, config.top_k, config.batch_size, max_batch);
  }

  TrainerState state = trainer.state();
  for (int epoch = state.epochs_done; epoch < config.epochs; ++epoch) {
    EpochReport report;
    report.epoch = epoch + 1;
    const std::vector<int64_t> order = epoch_order(N, config.seed, epoch);
    auto rows_of = [&](int64_t batch) { return cuda::batch_rows(order, batch, config.batch_size); };
    Progress progress(fmt::format("epoch {}/{}", epoch + 1, config.epochs), config.show_progress);
    const auto start = std::chrono::steady_clock::now();
    HASTE_CUDA_CHECK(cudaMemsetAsync(loss.data(), 0, sizeof(double), stream));
    uploader.stage(train, rows_of(0));
    for (int64_t batch = 0; batch < per_epoch; ++batch) {
      const cuda::DeviceBatch device_batch = uploader.acquire(stream);
      const int64_t step = state.steps_done;
      const cuda::LabelTargetsDevice targets = cuda::targets_of(device_batch);
      report.learning_rate =
          config.optimizer.schedule.lr_at(config.optimizer.lr, step, total_steps);
      encoder.forward(device_batch, dropout ? dropout_seed(config.seed, step) : no_dropout, stream);
      output.train_step(device_batch.B, device_batch.rows, encoder.hT(), targets, encoder.dhT(),
                        loss.data(), report.learning_rate, stream);
      encoder.backward(device_batch, stream);
      encoder_update.step(report.learning_rate, encoder, stream);
      state.steps_done = step + 1;
      if (batch + 1 < per_epoch) uploader.stage(train, rows_of(batch + 1));
      report.dst_changed_slots +=
          cuda::rewire_if_due(config, state.steps_done, total_steps, output,
                              {device_batch.B, encoder.hT(), targets}, stream);
      if ((batch + 1) % kProgressSteps == 0 || batch + 1 == per_epoch) {
        double loss_sum = 0;
        HASTE_CUDA_CHECK(cudaMemcpyAsync(&loss_sum, loss.data(), sizeof(double),
                                         cudaMemcpyDeviceToHost, stream));
        HASTE_CUDA_CHECK(cudaStreamSynchronize(stream));
        report.mean_loss = loss_sum / static_cast<double>(batch + 1);
        show_progress(progress, std::min(N, (batch + 1) * config.batch_size), N, report.mean_loss,
                      seconds_since(start));
      }
    }
    progress.finish();
    report.train_seconds = seconds_since(start);
    report.step = state.steps_done;
    report.examples_per_second = static_cast<double>(N) / std::max(report.train_seconds, 1e-9);
    // Back to the host: the model for evaluation and checkpoints, the state for checkpoints.
    encoder.download(model, stream);
    HASTE_CUDA_CHECK(cudaStreamSynchronize(stream));
    output.download(model);
    encoder_update.optimizer.download(trainer.optimizer());
    output.optimizer().download(trainer.optimizer());
    state.epochs_done = epoch + 1;
    trainer.restore(state);
    finish_epoch(
        config, [&](const Dataset& data) { return ranker->rank(data, encoder, output, stream); },
        test, propensities, report, on_epoch_end);
  }
  // The peak counts the trainer's device buffers, temporaries included (DST's gradient batch,
  // evaluation); cudaMemGetInfo adds the CUDA context, library workspaces and other processes.
  size_t free = 0, total = 0;
  HASTE_CUDA_CHECK(cudaMemGetInfo(&free, &total));
  fmt::print(
      "GPU memory: peak {:.2f} GB held by the trainer's buffers; {:.2f} GB of {:.2f} GB in use on "
      "the GPU at the end (CUDA context and library workspaces included)\n",
      static_cast<double>(cuda::device_memory_use(device).peak) * 1e-9,
      static_cast<double>(total - free) * 1e-9, static_cast<double>(total) * 1e-9);
}

}  // namespace haste
