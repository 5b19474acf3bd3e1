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
// through NCCL (src/cuda/trainer_multi_gpu.cpp), TrainConfig::shards = N. On the CPU,
// TrainConfig::shards > 1 runs the in-process shards (the one-GPU loop does not shard).
#pragma once

#include <functional>
#include <haste/dataset.hpp>
#include <haste/model.hpp>
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

// The label-sharded loop over GPUs 0..gpus-1 (src/cuda/trainer_multi_gpu.cpp); a build without
// CUDA throws.
void fit_on_gpus(Trainer& trainer, Model& model, const Dataset& train, const Dataset* test,
                 int gpus, const std::function<void(const EpochReport&)>& on_epoch_end);

// The GPU loop (src/cuda/trainer_gpu.cpp); a build without CUDA throws.
void fit_on_gpu(Trainer& trainer, Model& model, const Dataset& train, const Dataset* test,
                const std::function<void(const EpochReport&)>& on_epoch_end);

}  // namespace haste
