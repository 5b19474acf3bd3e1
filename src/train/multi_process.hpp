// A label-sharded run over processes (haste train under torchrun or mpirun, DESIGN.md 11,
// issue 9): what the CPU loop (Trainer::fit after Trainer::join) and the GPU loop
// (fit_on_gpu_process) share. Each process holds the whole model, trains its own label shard
// (Model::set_label_shards(Communicator&)) and replicates the rest (the encoder).
#pragma once

#include <haste/dataset.hpp>
#include <haste/model.hpp>
#include <haste/optimizer.hpp>
#include <haste/shard/communicator.hpp>
#include <haste/trainer.hpp>

namespace haste {

// Readies this process to train label shard comm.rank() of comm.size(): checks that the run
// can (config.shards is the world size) and that every rank holds the same model, data
// and settings (a fingerprint compared through `comm`: a rank started with other data or flags
// fails here, by name, instead of training garbage), then sets the model's shard and limits
// the optimizer to its rows. Every rank must call it.
void join_label_sharded_run(shard::Communicator& comm, const TrainConfig& config, Model& model,
                            Optimizer& optimizer, const Dataset& train);

// Rank 0's copy of everything the ranks replicate (the parameters not split by labels, i.e.
// the encoder, and their optimizer state) onto every rank, bit for bit: a rank whose copy
// drifted (another thread count, GPU atomics) continues from rank 0's, which is also the copy
// its checkpoint holds. Every rank must call it.
void broadcast_replicated(shard::Communicator& comm, Model& model, Optimizer& optimizer);

// Leaves the run when it goes out of scope, before the group it was made for ends: the model
// returns to one in-process shard (with P > 1 its other shards' rows are stale; the checkpoint
// holds the whole model) and the trainer leaves the group.
class LeaveRunOnExit {
 public:
  LeaveRunOnExit(Model& model, Trainer& trainer) : model_(model), trainer_(trainer) {}
  ~LeaveRunOnExit() {
    model_.set_label_shards(1);
    trainer_.join(nullptr);
  }
  LeaveRunOnExit(const LeaveRunOnExit&) = delete;
  LeaveRunOnExit& operator=(const LeaveRunOnExit&) = delete;

 private:
  Model& model_;
  Trainer& trainer_;
};

}  // namespace haste
