// `haste train --gpus N` (issue 9, DESIGN.md 11): the one-GPU loop of trainer_gpu.cpp over N
// GPUs of this process, label-sharded, one thread, one stream and one NCCL rank per GPU. Rank r
// holds shard r of split_labels(H, G, N): an OutputLayerGpu of its head labels and tail groups
// with their optimizer state. Per step, on every rank's stream:
//   batch (the same rows on every GPU) -> EncoderGpu::forward (replicated: the same h on every
//   GPU) -> OutputLayerGpu::train_step of the rank's labels (its share of dhT and of the
//   loss, and the shard's update) -> NCCL all-reduce of dhT -> EncoderGpu::backward and the
//   encoder's update (the same on every GPU) -> DST when due: OutputLayerGpu::rewire_tail of
//   the rank's groups (include/haste/dst.hpp TailPart), the ranks' slot scores all-gathered for
//   the global prune rule through the rank's NCCL communicator staged on host memory (the
//   choice is made on the host anyway, and a DST update is rare: a host-side exchange between
//   the threads of --gpus N would not serve the multi-process run, this serves both)
// The encoder is replicated for the reason src/model/output_shards.hpp gives; its copies are
// re-uploaded from rank 0's at every epoch start, so any drift between GPUs lasts an epoch.
// At each epoch's end every shard's rows (and rank 0's encoder) come back to the host model
// and optimizer, so evaluation, checkpoints and --resume are the CPU path's, as with one GPU.
//
// A multi-process run (fit_on_gpu_process, one GPU per process, NCCL's id shared through a
// file) runs the same loop on the process's one rank; its host model holds its own shard's rows
// (and, after an epoch, rank 0's encoder, broadcast), and evaluation and checkpoints combine the
// processes through the NCCL ranks (HostStagedCommunicator).
#include <fmt/format.h>

#include <algorithm>
#include <exception>
#include <haste/cuda/batch_upload.hpp>
#include <haste/cuda/cuda_check.hpp>
#include <haste/cuda/device_buffer.hpp>
#include <haste/cuda/encoder_gpu.hpp>
#include <haste/cuda/nccl_communicator.hpp>
#include <haste/cuda/output_layer_gpu.hpp>
#include <haste/device.hpp>
#include <haste/error.hpp>
#include <haste/progress.hpp>
#include <haste/shard/label_shards.hpp>
#include <haste/shard/launch.hpp>
#include <haste/trainer_device.hpp>
#include <memory>
#include <numeric>
#include <optional>
#include <thread>

#include "cuda/gpu_train_loop.hpp"
#include "train/multi_process.hpp"

namespace haste {
namespace {

using cuda::kProgressSteps;
using cuda::kRowMultiple;
using cuda::seconds_since;

// One GPU's part of the run.
struct Rank {
  std::unique_ptr<cuda::NcclCommunicator> comm;
  std::unique_ptr<cuda::HostStagedCommunicator> host;  // comm on host memory, for DST
  shard::LabelShard shard;
  std::optional<cuda::EncoderGpu> encoder;
  std::optional<cuda::OutputLayerGpu> output;
  std::optional<cuda::EncoderUpdate> encoder_update;
  std::unique_ptr<cuda::BatchUploader> uploader;
  cuda::DeviceBuffer<double> loss, loss_total;  // this shard's running sum; all shards' sum

  Rank() = default;
  Rank(const Rank&) = delete;
  Rank& operator=(const Rank&) = delete;
  // The members free their device memory, handles and streams with their own GPU current.
  ~Rank() {
    if (comm) cudaSetDevice(comm->device());
  }

  // Where the shard's parameters start in the host optimizer's tensors.
  cuda::OptimizerGpu::FirstRow first_row(int64_t g) const {
    return [shard = shard, g](const std::string& name) {
      return shard::label_rows(shard, name, g).value_or(std::pair<int64_t, int64_t>{0, 0}).first;
    };
  }
};

// Runs `work` on one thread per rank, with the rank's GPU current. When a rank fails, every
// communicator is aborted (so no rank waits forever in a collective) and the first failure is
// rethrown once all threads have ended.
void on_every_gpu(std::vector<Rank>& ranks, const std::function<void(Rank&, int)>& work) {
  std::vector<std::exception_ptr> failures(ranks.size());
  std::vector<std::thread> threads;
  for (size_t r = 0; r < ranks.size(); ++r) {
    threads.emplace_back([&, r] {
      try {
        HASTE_CUDA_CHECK(cudaSetDevice(ranks[r].comm->device()));
        work(ranks[r], static_cast<int>(r));
      } catch (...) {
        failures[r] = std::current_exception();
        for (Rank& rank : ranks) rank.comm->abort();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const std::exception_ptr& failure : failures) {
    if (failure) std::rethrow_exception(failure);
  }
}

// The loop over this process's ranks `comms` of a run of comms[0]->size() ranks: all of them
// (--gpus N), or one of a multi-process run, whose `host_group` then joins the host-side work of
// the processes (evaluation, the encoder's copy at an epoch's end). The host model's label
// shards are set by the caller.
void fit_on_ranks(Trainer& trainer, Model& model, const Dataset& train, const Dataset* test,
                  std::vector<std::unique_ptr<cuda::NcclCommunicator>> comms,
                  shard::Communicator* host_group,
                  const std::function<void(const EpochReport&)>& on_epoch_end) {
  const TrainConfig& config = trainer.config();
  const int64_t N = train.num_points();
  check(N > 0, "train: the training set has no rows");
  const int gpus = static_cast<int>(comms.size());  // this process's
  const int64_t max_batch = (config.batch_size + kRowMultiple - 1) / kRowMultiple * kRowMultiple;
  const int64_t per_epoch = trainer.steps_per_epoch(N);
  const int64_t total_steps = per_epoch * config.epochs;
  const std::optional<uint64_t> no_dropout;
  const bool dropout = model.config().dropout > 0;
  const int64_t g = model.shape().group_size;
  std::vector<double> propensities;
  if (test != nullptr && config.eval_each_epoch) propensities = jain_propensities(train.labels);

  const std::vector<shard::LabelShard> shards =
      shard::split_labels(model.shape().head_labels, model.shape().groups, comms[0]->size());
  std::vector<Rank> ranks(gpus);
  // Set up one GPU at a time: uploads read the host model and optimizer.
  for (int r = 0; r < gpus; ++r) {
    Rank& rank = ranks[r];
    rank.comm = std::move(comms[r]);
    rank.host = std::make_unique<cuda::HostStagedCommunicator>(*rank.comm);
    rank.shard = shards[rank.comm->rank()];
    HASTE_CUDA_CHECK(cudaSetDevice(rank.comm->device()));
    rank.encoder.emplace(cuda::EncoderGpu::from_model(model, max_batch));
    // Rank 0 draws the one-GPU loop's stochastic rounding; the others their own.
    rank.output.emplace(
        cuda::OutputLayerShape::of(model, rank.shard), config.optimizer, max_batch,
        config.seed + static_cast<uint64_t>(rank.comm->rank()) * 0x9e3779b97f4a7c15);
    rank.output->upload(model, rank.shard);
    rank.output->optimizer().upload(trainer.optimizer(), rank.first_row(g));
    rank.encoder_update.emplace(config.optimizer, config.seed + 1, *rank.encoder);
    rank.uploader =
        std::make_unique<cuda::BatchUploader>(cuda::UploadOptions::of(model, rank.shard));
    rank.loss = cuda::DeviceBuffer<double>(1);
    rank.loss_total = cuda::DeviceBuffer<double>(1);
  }

  TrainerState state = trainer.state();
  for (int epoch = state.epochs_done; epoch < config.epochs; ++epoch) {
    // Every GPU's encoder (and its optimizer state) from the host copy, i.e. rank 0's.
    for (Rank& rank : ranks) {
      HASTE_CUDA_CHECK(cudaSetDevice(rank.comm->device()));
      rank.encoder->upload(model);
      rank.encoder_update->optimizer.upload(trainer.optimizer());
    }
    EpochReport report;
    report.epoch = epoch + 1;
    const std::vector<int64_t> order = epoch_order(N, config.seed, epoch);
    auto rows_of = [&](int64_t batch) { return cuda::batch_rows(order, batch, config.batch_size); };
    Progress progress(fmt::format("epoch {}/{}", epoch + 1, config.epochs), config.show_progress);
    const auto start = std::chrono::steady_clock::now();
    on_every_gpu(ranks, [&](Rank& rank, int r) {
      cuda::NcclCommunicator& comm = *rank.comm;
      const cudaStream_t stream = comm.stream();
      HASTE_CUDA_CHECK(cudaMemsetAsync(rank.loss.data(), 0, sizeof(double), stream));
      rank.uploader->stage(train, rows_of(0));
      for (int64_t batch = 0; batch < per_epoch; ++batch) {
        const cuda::DeviceBatch device_batch = rank.uploader->acquire(stream);
        const int64_t step = state.steps_done + batch;
        const double lr = config.optimizer.schedule.lr_at(config.optimizer.lr, step, total_steps);
        rank.encoder->forward(device_batch, dropout ? dropout_seed(config.seed, step) : no_dropout,
                              stream);
        const cuda::LabelTargetsDevice targets = cuda::targets_of(device_batch);
        rank.output->train_step(device_batch.B, device_batch.rows, rank.encoder->hT(), targets,
                                rank.encoder->dhT(), rank.loss.data(), lr, stream);
        comm.all_reduce(std::span<float>(
            rank.encoder->dhT(), static_cast<size_t>(device_batch.B * rank.encoder->output_dim())));
        rank.encoder->backward(device_batch, stream);
        rank.encoder_update->step(lr, *rank.encoder, stream);
        if (batch + 1 < per_epoch) rank.uploader->stage(train, rows_of(batch + 1));
        // Every rank rewires its groups when due (the same choice); the count is all ranks'.
        const int64_t changed =
            cuda::rewire_if_due(config, step + 1, total_steps, *rank.output,
                                {device_batch.B, rank.encoder->hT(), targets}, stream,
                                {rank.host.get(), rank.shard.group_begin});
        if (r == 0) report.dst_changed_slots += changed;
        if ((batch + 1) % kProgressSteps == 0 || batch + 1 == per_epoch) {
          HASTE_CUDA_CHECK(cudaMemcpyAsync(rank.loss_total.data(), rank.loss.data(), sizeof(double),
                                           cudaMemcpyDeviceToDevice, stream));
          comm.all_reduce(std::span<double>(rank.loss_total.data(), 1));
          double loss_sum = 0;
          HASTE_CUDA_CHECK(cudaMemcpyAsync(&loss_sum, rank.loss_total.data(), sizeof(double),
                                           cudaMemcpyDeviceToHost, stream));
          HASTE_CUDA_CHECK(cudaStreamSynchronize(stream));
          if (r == 0) {
            report.learning_rate = lr;
            report.mean_loss = loss_sum / static_cast<double>(batch + 1);
            show_progress(progress, std::min(N, (batch + 1) * config.batch_size), N,
                          report.mean_loss, seconds_since(start));
          }
        }
      }
      HASTE_CUDA_CHECK(cudaStreamSynchronize(stream));
    });
    progress.finish();
    report.train_seconds = seconds_since(start);
    state.steps_done += per_epoch;
    report.step = state.steps_done;
    report.examples_per_second = static_cast<double>(N) / std::max(report.train_seconds, 1e-9);
    // Back to the host, one GPU at a time: each shard's rows, and rank 0's encoder.
    for (int r = 0; r < gpus; ++r) {
      Rank& rank = ranks[r];
      HASTE_CUDA_CHECK(cudaSetDevice(rank.comm->device()));
      if (rank.comm->rank() == 0) {
        rank.encoder->download(model, rank.comm->stream());
        HASTE_CUDA_CHECK(cudaStreamSynchronize(rank.comm->stream()));
        rank.encoder_update->optimizer.download(trainer.optimizer());
      }
      rank.output->download(model, rank.shard);
      rank.output->optimizer().download(trainer.optimizer(), rank.first_row(g));
    }
    // Another process's ranks continue from rank 0's encoder, as this process's do.
    if (host_group != nullptr) broadcast_replicated(*host_group, model, trainer.optimizer());
    state.epochs_done = epoch + 1;
    trainer.restore(state);
    finish_epoch(
        config, [&](const Dataset& data) { return model.predict(data, config.top_k); }, test,
        propensities, report, on_epoch_end);
  }
  for (int r = 0; r < gpus; ++r) {
    size_t free = 0, total = 0;
    HASTE_CUDA_CHECK(cudaSetDevice(ranks[r].comm->device()));
    HASTE_CUDA_CHECK(cudaMemGetInfo(&free, &total));
    fmt::print("GPU {} memory in use at the end of training: {:.2f} GB of {:.2f} GB\n", r,
               static_cast<double>(total - free) * 1e-9, static_cast<double>(total) * 1e-9);
  }
}

}  // namespace

void fit_on_gpus(Trainer& trainer, Model& model, const Dataset& train, const Dataset* test,
                 int gpus, const std::function<void(const EpochReport&)>& on_epoch_end) {
  const GpuInventory inventory = detect_gpus();
  check(gpus >= 1 && gpus <= static_cast<int>(inventory.gpus.size()),
        "train --gpus {}: this machine has {} GPU(s)", gpus, inventory.gpus.size());
  // Evaluation on the host runs the same label shards (in-process ranks), as Trainer::fit does.
  model.set_label_shards(gpus);
  std::vector<int> devices(gpus);
  std::iota(devices.begin(), devices.end(), 0);
  fit_on_ranks(trainer, model, train, test, cuda::NcclCommunicator::for_devices(devices), nullptr,
               on_epoch_end);
}

void fit_on_gpu_process(Trainer& trainer, Model& model, const Dataset& train, const Dataset* test,
                        const std::filesystem::path& nccl_id_file,
                        std::chrono::milliseconds timeout, const RankEpochCallback& on_epoch_end) {
  const shard::LaunchRank launch = shard::launch_rank_from_environment();
  const GpuInventory inventory = detect_gpus();
  check(launch.local_rank < static_cast<int>(inventory.gpus.size()),
        "train: rank {} is local rank {} (from {}), but this machine has {} GPU(s): start at most "
        "one process per GPU on each host",
        launch.rank, launch.local_rank, launch.source, inventory.gpus.size());
  std::vector<std::unique_ptr<cuda::NcclCommunicator>> comms;
  comms.push_back(cuda::NcclCommunicator::from_environment(nccl_id_file, timeout));
  cuda::HostStagedCommunicator host_group(*comms[0]);
  const LeaveRunOnExit leave(model, trainer);
  // Every rank has read the id once all hold a communicator (the check's collective): a later
  // run cannot mistake the file for its own.
  join_label_sharded_run(host_group, trainer.config(), model, trainer.optimizer(), train);
  if (host_group.rank() == 0) {
    std::error_code ec;
    std::filesystem::remove(nccl_id_file, ec);
  }
  fit_on_ranks(trainer, model, train, test, std::move(comms), &host_group,
               [&](const EpochReport& report) { on_epoch_end(report, host_group); });
}

}  // namespace haste
