// The training loop: epochs of seeded shuffled mini-batches over a Dataset, optimizer steps
// with the learning-rate schedule, DST on schedule, a progress bar with loss and examples/s,
// and an evaluation on a test set after each epoch (P@k, nDCG@k, PSP@k with propensities from
// the training labels). Each epoch is reported through a callback so the caller can print,
// plot and checkpoint.
//
// Reproducible and resumable: the shuffle of epoch e is a function of (seed, e), dropout masks
// and DST's random choices of (seed, step), so a run resumed from a checkpoint taken at the end
// of an epoch (model, optimizer state and TrainerState) continues exactly as the uninterrupted
// run would, for the same thread count.
#pragma once

#include <cstdint>
#include <functional>
#include <haste/dataset.hpp>
#include <haste/dst.hpp>
#include <haste/metrics.hpp>
#include <haste/model.hpp>
#include <haste/optimizer.hpp>
#include <haste/shard/communicator.hpp>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <vector>

namespace haste {

struct TrainConfig {
  int epochs = 5;
  int64_t batch_size = 256;
  OptimizerConfig optimizer;
  DstConfig dst;
  uint64_t seed = 1;  // shuffles, dropout, DST
  int threads = 0;    // OpenMP threads; 0 keeps the current setting (OMP_NUM_THREADS or all cores)
  // Label shards of the output layer, each on its own in-process rank (Model::set_label_shards;
  // DESIGN.md 11): the same training as 1 shard, within floating-point summation noise.
  int shards = 1;
  bool eval_each_epoch = true;
  // haste train writes its checkpoint after every this many epochs, after the last one and when
  // --stop-after ends the run: a large model on short epochs spends less time writing.
  int checkpoint_every = 1;
  int top_k = kMaxK;  // predictions kept per row for evaluation
  bool show_progress = true;

  void validate() const;
  nlohmann::json to_json() const;
  // Unknown keys and bad values are errors; missing keys keep their defaults.
  static TrainConfig from_json(const nlohmann::json& json);
};

struct EpochReport {
  int epoch = 0;             // 1-based
  int64_t step = 0;          // optimizer steps done so far
  double mean_loss = 0;      // over the epoch's batches
  double learning_rate = 0;  // at the epoch's last step
  double train_seconds = 0;  // this epoch's training, without evaluation
  double examples_per_second = 0;
  double eval_seconds = 0;
  int64_t dst_changed_slots = 0;        // over this epoch
  std::optional<MetricReport> metrics;  // when evaluated
};

// Where a run stands: enough, with the model and optimizer state, to resume it.
struct TrainerState {
  int epochs_done = 0;
  int64_t steps_done = 0;

  nlohmann::json to_json() const;
  static TrainerState from_json(const nlohmann::json& json);
};

class Trainer {
 public:
  // `model` must outlive the trainer. The optimizer is created here (zero state).
  Trainer(const TrainConfig& config, Model& model);

  // Trains from the current state to config.epochs epochs. `test` may be null (no evaluation).
  // `on_epoch_end` is called after each epoch (and its evaluation).
  void fit(const Dataset& train, const Dataset* test,
           const std::function<void(const EpochReport&)>& on_epoch_end = {});

  // Evaluates `model` on `test` with propensities from `train`'s labels.
  MetricReport evaluate(const Dataset& train, const Dataset& test) const;

  const TrainerState& state() const { return state_; }
  // For resuming: set the state (and load the optimizer's state tensors) before fit().
  void restore(const TrainerState& state);
  Optimizer& optimizer() { return optimizer_; }
  const TrainConfig& config() const { return config_; }

  // Makes fit() train this process's part of a multi-process run (haste train under torchrun
  // or mpirun, issue 9): label shard comm.rank() of comm.size() (config.shards must equal
  // comm.size()), the other shards in the other processes, which call fit() with the same
  // model, data and config. With a communicator that sums in rank order (TcpGroup), the run is
  // the one of comm.size() in-process shards, bit for bit. `comm` must outlive fit(); null
  // leaves the group (fit() then shards in-process again, by config.shards).
  void join(shard::Communicator* comm) { process_group_ = comm; }

  // Steps per epoch and in all, for a training set of `rows` rows.
  int64_t steps_per_epoch(int64_t rows) const;

 private:
  TrainConfig config_;
  Model& model_;
  Optimizer optimizer_;
  TrainerState state_;
  shard::Communicator* process_group_ = nullptr;
};

// The row order of epoch `epoch` (0-based) for `rows` rows: a permutation seeded by (seed, epoch).
std::vector<int64_t> epoch_order(int64_t rows, uint64_t seed, int epoch);

class Progress;

// The progress line of the CPU and GPU loops: `done` of `rows` rows, the mean loss so far and
// the rows per second over `seconds`.
void show_progress(Progress& progress, int64_t done, int64_t rows, double mean_loss,
                   double seconds);

// Ranks every row of a dataset: the top config.top_k labels, original ids, best first.
using RankFunction = std::function<Rankings(const Dataset&)>;

// The end of an epoch in the CPU and GPU loops alike: the evaluation of `rank`'s rankings of
// `test` (when given and configured; propensities from the training labels) into `report`,
// then the callback.
void finish_epoch(const TrainConfig& config, const RankFunction& rank, const Dataset* test,
                  const std::vector<double>& propensities, EpochReport& report,
                  const std::function<void(const EpochReport&)>& on_epoch_end);

// The seeds of step `step` (0-based) of a run seeded `seed`, CPU and GPU loops alike: dropout
// while computing the step, DST after it.
uint64_t dropout_seed(uint64_t seed, int64_t step);
uint64_t dst_seed(uint64_t seed, int64_t step);

}  // namespace haste
