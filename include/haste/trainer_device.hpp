// Where `haste train` runs (issue 6 item 1): `--device cpu` is Trainer::fit; `--device cuda`
// runs every step on the GPU (EncoderGpu, OutputLayerGpu, OptimizerGpu; batches uploaded
// while the previous step runs); `--device auto` (the default) takes the GPU when this build
// has the CUDA backend, a GPU is present and the model's shapes are ones the GPU kernels take,
// and says why not otherwise.
//
// The GPU loop is the CPU loop's: same shuffles, dropout seeds, learning-rate schedule, step
// count and EpochReport. The model and the optimizer state go to the device at the start and
// come back after every epoch, so evaluation (on the CPU, Model::predict), checkpoints and
// --resume are the CPU path's; the test set is ranked on the device (fused top-k). Differences:
// bf16 output-layer weights updated with stochastic rounding; a last partial batch is padded to
// a multiple of 16 rows that count in its mean; DST's prune/regrow choice is made on the host
// from the downloaded tail (OutputLayerGpu::rewire_tail; gradient regrowth recomputes the last
// batch's tail logits after the update, where the CPU uses those of the step).
//
// Several GPUs (`--gpus N`, issue 9): the same loop label-sharded over N GPUs of this process
// through NCCL (src/cuda/trainer_multi_gpu.cpp), TrainConfig::shards = N, DST included (each
// GPU rewires its own groups, include/haste/dst.hpp TailPart). On the CPU,
// TrainConfig::shards > 1 runs the in-process shards (the one-GPU loop does not shard).
//
// Several processes (issue 9): under torchrun, mpirun or our HASTE_RANK/HASTE_WORLD_SIZE, each
// process is one rank (include/haste/shard/launch.hpp) and trains its label shard
// (fit_multi_process): on the CPU through a TcpGroup (the same numbers as --shards P in one
// process), on the GPU (one per process, LaunchRank::local_rank) through NCCL.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <haste/dataset.hpp>
#include <haste/model.hpp>
#include <haste/shard/communicator.hpp>
#include <haste/shard/launch.hpp>
#include <haste/trainer.hpp>
#include <string>

namespace haste {

enum class TrainDevice { cpu, cuda, automatic };

TrainDevice parse_train_device(const std::string& name);  // "cpu", "cuda" or "auto"

// Why this model and config cannot train on the GPU here, or "" when they can.
std::string gpu_training_unsupported(const Model& model, const TrainConfig& config);

// Trains like trainer.fit, on the device `device` resolves to (printing the choice when `auto`
// falls back). Throws for `cuda` when the GPU cannot run it, naming the reason. `gpus` > 0
// takes the NCCL path on that many GPUs (device must not be cpu; N = 1 is the NCCL path too).
void fit_on_device(TrainDevice device, Trainer& trainer, Model& model, const Dataset& train,
                   const Dataset* test, const std::function<void(const EpochReport&)>& on_epoch_end,
                   int gpus = 0);

// This process's rank of a multi-process run, and how the ranks meet.
struct MultiProcessRun {
  shard::LaunchRank launch;
  // The CPU: where rank 0 publishes its TCP address when the environment gives none
  // (MASTER_ADDR/MASTER_PORT); the GPU: where rank 0 writes NCCL's unique id. On a file system
  // every rank sees; a fresh path per run (rank 0 removes it once every rank has read it).
  std::filesystem::path rendezvous_file;
  // How long a rank waits for the others: to join, and in any one collective.
  std::chrono::milliseconds timeout = std::chrono::minutes(5);
};

// The end of an epoch of a multi-process run, on every rank: the report, and the run's group
// for collectives on host memory (save_run_checkpoint(directory, model, group, ...)).
using RankEpochCallback = std::function<void(const EpochReport&, shard::Communicator& group)>;

// Trains this process's label shard of a multi-process run, on the device `device` resolves
// to (`auto`: the GPU when the CUDA loop can run the model here, else the CPU; every rank must
// resolve alike). TrainConfig::shards must be the world size.
void fit_multi_process(TrainDevice device, const MultiProcessRun& run, Trainer& trainer,
                       Model& model, const Dataset& train, const Dataset* test,
                       const RankEpochCallback& on_epoch_end);

// The GPU part: NcclCommunicator::from_environment(nccl_id_file, timeout), then the loop of
// fit_on_gpus on this process's one GPU (src/cuda/trainer_multi_gpu.cpp); a build without CUDA
// throws.
void fit_on_gpu_process(Trainer& trainer, Model& model, const Dataset& train, const Dataset* test,
                        const std::filesystem::path& nccl_id_file,
                        std::chrono::milliseconds timeout, const RankEpochCallback& on_epoch_end);

// The label-sharded loop over GPUs 0..gpus-1 (src/cuda/trainer_multi_gpu.cpp); a build without
// CUDA throws.
void fit_on_gpus(Trainer& trainer, Model& model, const Dataset& train, const Dataset* test,
                 int gpus, const std::function<void(const EpochReport&)>& on_epoch_end);

// The GPU loop (src/cuda/trainer_gpu.cpp); a build without CUDA throws.
void fit_on_gpu(Trainer& trainer, Model& model, const Dataset& train, const Dataset* test,
                const std::function<void(const EpochReport&)>& on_epoch_end);

}  // namespace haste
