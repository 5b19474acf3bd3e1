// The training loop (see include/haste/trainer.hpp).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <haste/error.hpp>
#include <haste/progress.hpp>
#include <haste/trainer.hpp>
#include <numeric>

#include "data/random.hpp"
#include "train/multi_process.hpp"

namespace haste {
namespace {

// Keys of the random streams derived from the run seed.
constexpr uint64_t kShuffleStream = 0x5f;
constexpr uint64_t kDropoutStream = 0xd0;
constexpr uint64_t kDstStream = 0xd57;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

void show_progress(Progress& progress, int64_t done, int64_t rows, double mean_loss,
                   double seconds) {
  const std::string status = fmt::format(
      "rows  loss {:.4g}  {}/s", mean_loss,
      human_count(static_cast<int64_t>(static_cast<double>(done) / std::max(seconds, 1e-9))));
  progress.update(static_cast<double>(done) / static_cast<double>(rows), done, status.c_str());
}

void finish_epoch(const TrainConfig& config, const RankFunction& rank, const Dataset* test,
                  const std::vector<double>& propensities, EpochReport& report,
                  const std::function<void(const EpochReport&)>& on_epoch_end) {
  if (test != nullptr && config.eval_each_epoch) {
    const auto eval_start = std::chrono::steady_clock::now();
    report.metrics = haste::evaluate(rank(*test), test->labels, propensities);
    report.eval_seconds = seconds_since(eval_start);
  }
  if (on_epoch_end) on_epoch_end(report);
}

uint64_t dropout_seed(uint64_t seed, int64_t step) {
  return hash_key(seed, kDropoutStream, static_cast<uint64_t>(step));
}

uint64_t dst_seed(uint64_t seed, int64_t step) {
  return hash_key(seed, kDstStream, static_cast<uint64_t>(step));
}

std::vector<int64_t> epoch_order(int64_t rows, uint64_t seed, int epoch) {
  std::vector<int64_t> order(rows);
  std::iota(order.begin(), order.end(), 0);
  Rng rng(hash_key(seed, kShuffleStream, epoch));
  for (int64_t i = rows - 1; i > 0; --i) {
    std::swap(order[i], order[rng.below(static_cast<uint64_t>(i + 1))]);
  }
  return order;
}

Trainer::Trainer(const TrainConfig& config, Model& model)
    : config_(config), model_(model), optimizer_(config.optimizer, model) {
  config_.validate();
}

int64_t Trainer::steps_per_epoch(int64_t rows) const {
  return (rows + config_.batch_size - 1) / config_.batch_size;
}

void Trainer::restore(const TrainerState& state) {
  state_ = state;
  optimizer_.set_steps_taken(state.steps_done);
}

MetricReport Trainer::evaluate(const Dataset& train, const Dataset& test) const {
  const std::vector<double> propensities = jain_propensities(train.labels);
  return haste::evaluate(model_.predict(test, config_.top_k), test.labels, propensities);
}

void Trainer::fit(const Dataset& train, const Dataset* test,
                  const std::function<void(const EpochReport&)>& on_epoch_end) {
  if (config_.threads > 0) omp_set_num_threads(config_.threads);
  if (process_group_ != nullptr) {
    join_label_sharded_run(*process_group_, config_, model_, optimizer_, train);
  } else {
    model_.set_label_shards(config_.shards);
  }
  const int64_t N = train.num_points();
  check(N > 0, "train: the training set has no rows");
  const int64_t per_epoch = steps_per_epoch(N);
  const int64_t total_steps = per_epoch * config_.epochs;
  std::vector<double> propensities;
  if (test != nullptr && config_.eval_each_epoch) propensities = jain_propensities(train.labels);

  for (int epoch = state_.epochs_done; epoch < config_.epochs; ++epoch) {
    EpochReport report;
    report.epoch = epoch + 1;
    const std::vector<int64_t> order = epoch_order(N, config_.seed, epoch);
    Progress progress(fmt::format("epoch {}/{}", epoch + 1, config_.epochs), config_.show_progress);
    const auto start = std::chrono::steady_clock::now();
    double loss_sum = 0;
    for (int64_t batch = 0; batch < per_epoch; ++batch) {
      const int64_t first = batch * config_.batch_size;
      const std::span<const int64_t> rows(order.data() + first,
                                          std::min(config_.batch_size, N - first));
      const int64_t step = state_.steps_done;
      model_.keep_tail_dz(config_.dst.regrow == DstRegrow::gradient &&
                          config_.dst.due(step + 1, total_steps));
      loss_sum += model_.compute_gradients(train, rows, dropout_seed(config_.seed, step));
      report.learning_rate =
          config_.optimizer.schedule.lr_at(config_.optimizer.lr, step, total_steps);
      optimizer_.step(report.learning_rate);
      state_.steps_done = step + 1;
      if (config_.dst.due(state_.steps_done, total_steps)) {
        report.dst_changed_slots +=
            apply_dst(model_, optimizer_, config_.dst.prune, config_.dst.regrow,
                      config_.dst.fraction_at(state_.steps_done, total_steps),
                      dst_seed(config_.seed, state_.steps_done), process_group_)
                .changed_slots;
      }
      show_progress(progress, first + static_cast<int64_t>(rows.size()), N,
                    loss_sum / static_cast<double>(batch + 1), seconds_since(start));
    }
    progress.finish();
    report.train_seconds = seconds_since(start);
    report.step = state_.steps_done;
    report.mean_loss = loss_sum / static_cast<double>(per_epoch);
    report.examples_per_second = static_cast<double>(N) / std::max(report.train_seconds, 1e-9);
    state_.epochs_done = epoch + 1;
    if (process_group_ != nullptr) broadcast_replicated(*process_group_, model_, optimizer_);
    finish_epoch(
        config_, [&](const Dataset& data) { return model_.predict(data, config_.top_k); }, test,
        propensities, report, on_epoch_end);
  }
}

}  // namespace haste
