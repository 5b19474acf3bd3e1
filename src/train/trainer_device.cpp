// Choosing the training device (include/haste/trainer_device.hpp).
#include <fmt/format.h>

#include <haste/error.hpp>
#include <haste/trainer_device.hpp>

namespace haste {

TrainDevice parse_train_device(const std::string& name) {
  if (name == "cpu") return TrainDevice::cpu;
  if (name == "cuda") return TrainDevice::cuda;
  if (name == "auto") return TrainDevice::automatic;
  fail("train: device '{}' is not one of cpu, cuda, auto", name);
}

void fit_on_device(TrainDevice device, Trainer& trainer, Model& model, const Dataset& train,
                   const Dataset* test, const std::function<void(const EpochReport&)>& on_epoch_end,
                   int gpus) {
  if (gpus > 0) {
    check(device != TrainDevice::cpu, "train: --gpus {} needs --device cuda or auto", gpus);
    const std::string reason = gpu_training_unsupported(model, trainer.config());
    check(reason.empty(), "train --gpus {}: {}", gpus, reason);
    check(!trainer.config().dst.enabled,
          "train --gpus {}: DST does not run on the label-sharded GPU path yet (one GPU, or the "
          "CPU with --shards, runs it)",
          gpus);
    fmt::print("training label-sharded on {} GPU{} (NCCL)\n", gpus, gpus > 1 ? "s" : "");
    fit_on_gpus(trainer, model, train, test, gpus, on_epoch_end);
    return;
  }
  if (device != TrainDevice::cpu) {
    std::string reason = gpu_training_unsupported(model, trainer.config());
    if (reason.empty() && trainer.config().shards > 1) {
      reason = "--shards splits the labels over in-process ranks on the CPU (--gpus N on GPUs)";
    }
    if (reason.empty()) {
      fmt::print("training on the GPU\n");
      fit_on_gpu(trainer, model, train, test, on_epoch_end);
      return;
    }
    check(device == TrainDevice::automatic, "train --device cuda: {}", reason);
    fmt::print("training on the CPU ({})\n", reason);
  }
  trainer.fit(train, test, on_epoch_end);
}

}  // namespace haste
