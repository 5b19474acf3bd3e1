// Choosing the training device (include/haste/trainer_device.hpp).
#include <fmt/format.h>

#include <haste/error.hpp>
#include <haste/shard/tcp_group.hpp>
#include <haste/trainer_device.hpp>
#include <memory>

#include "train/multi_process.hpp"

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

void fit_multi_process(TrainDevice device, const MultiProcessRun& run, Trainer& trainer,
                       Model& model, const Dataset& train, const Dataset* test,
                       const RankEpochCallback& on_epoch_end) {
  const shard::LaunchRank& launch = run.launch;
  const std::string reason = gpu_training_unsupported(model, trainer.config());
  if (device != TrainDevice::cpu && reason.empty()) {
    fmt::print("training label-sharded over {} process{} ({}), rank {} on GPU {} (NCCL)\n",
               launch.world_size, launch.world_size > 1 ? "es" : "", launch.source, launch.rank,
               launch.local_rank);
    check(!run.rendezvous_file.empty(),
          "train: a multi-process run on GPUs shares NCCL's id through a file: give every rank "
          "the same --rendezvous FILE (or HASTE_RENDEZVOUS) on a file system they all see");
    fit_on_gpu_process(trainer, model, train, test, run.rendezvous_file, run.timeout, on_epoch_end);
    return;
  }
  check(device != TrainDevice::cuda, "train --device cuda: {}", reason);
  fmt::print("training label-sharded over {} process{} ({}) on the CPU{}\n", launch.world_size,
             launch.world_size > 1 ? "es" : "", launch.source,
             device == TrainDevice::automatic ? fmt::format(" ({})", reason) : "");
  // One process meets no one: it needs no address.
  const std::unique_ptr<shard::TcpGroup> group = shard::TcpGroup::connect(
      launch,
      launch.world_size > 1 ? shard::tcp_rendezvous_from_environment(run.rendezvous_file)
                            : shard::TcpRendezvous{},
      {run.timeout, run.timeout});
  trainer.join(group.get());
  const LeaveRunOnExit leave(model, trainer);
  trainer.fit(train, test, [&](const EpochReport& report) { on_epoch_end(report, *group); });
}

}  // namespace haste
