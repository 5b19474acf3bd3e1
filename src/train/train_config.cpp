// TrainConfig and TrainerState: validation and JSON (see include/haste/trainer.hpp).
#include <concepts>
#include <haste/error.hpp>
#include <haste/trainer.hpp>
#include <type_traits>

#include "model/config_json.hpp"

namespace haste {

using Json = nlohmann::json;

void TrainConfig::validate() const {
  check(epochs >= 1, "train: 'epochs' = {} must be at least 1", epochs);
  check(batch_size >= 1, "train: 'batch_size' = {} must be at least 1", batch_size);
  check(threads >= 0, "train: 'threads' = {} must not be negative (0 = all cores)", threads);
  check(shards >= 1, "train: 'shards' = {} must be at least 1", shards);
  check(checkpoint_every >= 1, "train: 'checkpoint_every' = {} must be at least 1 (epochs)",
        checkpoint_every);
  check(top_k >= 1 && top_k <= kMaxK, "train: 'top_k' = {} must be in [1, {}]", top_k, kMaxK);
  optimizer.validate();
  dst.validate();
}

template <typename Config, typename Visitor>
requires std::same_as<std::remove_const_t<Config>, TrainConfig>
void visit_fields(Config& c, Visitor& v) {
  v.field("epochs", c.epochs);
  v.field("batch_size", c.batch_size);
  v.object("optimizer", c.optimizer);
  v.object("dst", c.dst);
  v.field("seed", c.seed);
  v.field("threads", c.threads);
  v.field("shards", c.shards);
  v.field("eval_each_epoch", c.eval_each_epoch);
  v.field("checkpoint_every", c.checkpoint_every);
  v.field("top_k", c.top_k);
  v.field("show_progress", c.show_progress);
}

template <typename State, typename Visitor>
requires std::same_as<std::remove_const_t<State>, TrainerState>
void visit_fields(State& s, Visitor& v) {
  v.field("epochs_done", s.epochs_done);
  v.field("steps_done", s.steps_done);
}

Json TrainConfig::to_json() const { return config_json::write_fields(*this); }

TrainConfig TrainConfig::from_json(const Json& json) {
  return config_json::read_valid_fields<TrainConfig>(json, "train config");
}

Json TrainerState::to_json() const { return config_json::write_fields(*this); }

TrainerState TrainerState::from_json(const Json& json) {
  const TrainerState state = config_json::read_fields<TrainerState>(json, "trainer state");
  check(state.epochs_done >= 0 && state.steps_done >= 0,
        "trainer state: epochs_done = {} and steps_done = {} must not be negative",
        state.epochs_done, state.steps_done);
  return state;
}

}  // namespace haste
