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
                   const Dataset* test,
                   const std::function<void(const EpochReport&)>& on_epoch_end) {
  if (device != TrainDevice::cpu) {
    const std::string reason = gpu_training_unsupported(model, trainer.config());
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
