// Optimizers over a model's named parameters (DESIGN.md 8): AdamW and SGD with momentum, with
// a learning-rate schedule (linear warmup, then constant, linear or cosine decay).
//
// Sparse input layer: its gradient is nonzero only in the rows the batch touched
// (Parameter::row_sparse, Model::touched_rows), so only those rows take a gradient step,
// together with their optimizer state (the "lazy" update of sparse Adam): a dense F x d Adam
// step would dominate CPU time. Untouched rows keep their state (no momentum between the steps
// that touch them), but AdamW's decoupled weight decay still shrinks every row at every step,
// as for a dense layer (one multiply per weight): decaying only the touched rows left the rows
// of rare features almost unregularised (debdeps P@1 69.9 -> 73.1, docs/results.md). SGD's
// decay is part of its gradient and stays lazy with it.
//
// State tensors are named "<state>.<parameter>" (e.g. "adam.m.tail.weight",
// "sgd.momentum.head.bias") so a checkpoint can save and restore them generically.
#pragma once

#include <cstdint>
#include <haste/model.hpp>
#include <haste/shard/label_shards.hpp>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace haste {

enum class OptimizerKind { adamw, sgd };
enum class LrDecay { constant, linear, cosine };

// Defaults (here and in OptimizerConfig) are tuned on debdeps (bench/cpu_train_bench.cpp):
// AdamW at lr 0.03 with decoupled weight decay 0.1, 5% warmup and linear decay to zero.
struct LrSchedule {
  double warmup_fraction = 0.05;  // of all steps: lr rises linearly from ~0 to the base lr
  LrDecay decay = LrDecay::linear;
  double final_scale = 0.0;  // lr at the last step as a fraction of the base lr (linear, cosine)

  // The learning rate at step `step` (0-based) of `total_steps`.
  double lr_at(double base_lr, int64_t step, int64_t total_steps) const;
};

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::adamw;
  double lr = 0.03;
  double beta1 = 0.9;  // AdamW
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.1;  // decoupled (AdamW); plain L2 added to the gradient for SGD
  double momentum = 0.9;      // SGD
  LrSchedule schedule;

  void validate() const;
  nlohmann::json to_json() const;
  static OptimizerConfig from_json(const nlohmann::json& json);
};

std::string to_string(OptimizerKind kind);
std::string to_string(LrDecay decay);
OptimizerKind parse_optimizer_kind(const std::string& name);
LrDecay parse_lr_decay(const std::string& name);

class Optimizer {
 public:
  // State is allocated for every parameter of `model` (zero). The optimizer keeps a reference
  // to the model: it must outlive the optimizer and keep its parameter layout.
  Optimizer(const OptimizerConfig& config, Model& model);

  // One update from the gradients of the last compute_gradients, at learning rate `lr`.
  // Advances the internal step counter (AdamW's bias correction).
  void step(double lr);
  int64_t steps_taken() const { return steps_; }
  // A multi-process label-sharded run (Model::set_label_shards(Communicator&)): from now on,
  // step() updates only `shard`'s rows of the parameters split by labels (head.*, tail.*, for
  // groups of g), the rows whose gradients this process computes; the others keep their
  // weights and state. The update of a row is the same whichever rows are updated.
  void update_label_shard_only(const shard::LabelShard& shard, int64_t g);

  // DST changed the tail: `source_slots` [G, k] says, for every slot of every group, which old
  // slot of the same group its weight came from, or -1 for a new (regrown) slot. State of the
  // tail weights moves with its weights; new slots get zero state.
  void remap_tail_slots(const GroupSharedShape& shape, std::span<const int32_t> source_slots);

  // Named state tensors (views into the optimizer) and the step counter, for checkpoints.
  std::vector<NamedTensor<float>> state_tensors();
  void set_steps_taken(int64_t steps) { steps_ = steps; }
  int64_t state_bytes() const;
  // State bytes of the head and tail parameters only (DESIGN.md 12's output_layer_bytes adds
  // them to the weights).
  int64_t output_layer_state_bytes() const;

  const OptimizerConfig& config() const { return config_; }

 private:
  struct Slot {
    std::string name;
    std::vector<int64_t> shape;
    std::vector<float> first;   // Adam m, or SGD momentum
    std::vector<float> second;  // Adam v (empty for SGD)
  };

  // Updates `parameter` (its touched rows when row-sparse) and its state `first`, `second`
  // (second empty for SGD), all of one size.
  void update_rows(const Parameter& parameter, std::span<float> first, std::span<float> second,
                   std::span<const int32_t> rows, double lr);

  OptimizerConfig config_;
  Model& model_;
  std::vector<Slot> slots_;  // one per model parameter, same order
  int64_t steps_ = 0;
  std::optional<std::pair<shard::LabelShard, int64_t>> only_shard_;  // and g
};

}  // namespace haste
