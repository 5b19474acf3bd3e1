// A label-sharded run over processes (see src/train/multi_process.hpp).
#include "train/multi_process.hpp"

#include <xxhash.h>

#include <haste/error.hpp>
#include <haste/shard/label_shards.hpp>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "data/random.hpp"

namespace haste {
namespace {

template <typename T>
uint64_t hash_of(std::span<const T> values) {
  return XXH3_64bits(values.data(), values.size_bytes());
}

// What every rank must agree on: the settings that shape the run (not the thread count or the
// progress display, which may differ per host), the training data and the model as built or
// loaded (its weights, label order and tail indices).
uint64_t run_fingerprint(const TrainConfig& config, const Model& model, const Dataset& train) {
  nlohmann::json settings = config.to_json();
  settings.erase("threads");
  settings.erase("show_progress");
  const std::string text =
      settings.dump() + model.config().to_json().dump() + model.shape().to_json().dump();
  uint64_t key = hash_of(std::span<const char>(text));
  key = hash_key(key, static_cast<uint64_t>(train.num_points()),
                 hash_of(std::span<const int64_t>(train.labels.indptr)),
                 hash_of(std::span<const int32_t>(train.labels.indices)));
  for (const auto& tensor : model.float_tensors()) key = hash_key(key, hash_of(tensor.data));
  for (const auto& tensor : model.int_tensors()) key = hash_key(key, hash_of(tensor.data));
  return key;
}

bool is_split_by_labels(const std::string& name) {
  return shard::label_rows(shard::LabelShard{}, name, 1).has_value();
}

}  // namespace

void join_label_sharded_run(shard::Communicator& comm, const TrainConfig& config, Model& model,
                            Optimizer& optimizer, const Dataset& train) {
  const int P = comm.size(), rank = comm.rank();
  check(config.shards == P,
        "multi-process run: {} label shards configured for {} processes (the world size sets "
        "the shard count)",
        config.shards, P);
  const uint64_t mine = run_fingerprint(config, model, train);
  std::vector<uint64_t> all(P);
  shard::all_gather_bits(comm, std::span<const uint64_t>(&mine, 1), std::span<uint64_t>(all));
  for (int r = 0; r < P; ++r) {
    check(all[r] == mine,
          "multi-process run: rank {} holds another model, data or settings than rank {} "
          "(fingerprints {:016x} and {:016x}): start every rank with the same data, config, flags "
          "and haste build",
          r, rank, all[r], mine);
  }
  model.set_label_shards(comm);
  const std::vector<shard::LabelShard> shards =
      shard::split_labels(model.shape().head_labels, model.shape().groups, P);
  optimizer.update_label_shard_only(shards[rank], model.shape().group_size);
}

void broadcast_replicated(shard::Communicator& comm, Model& model, Optimizer& optimizer) {
  if (comm.size() == 1) return;
  for (const Parameter& parameter : model.parameters()) {
    if (!is_split_by_labels(parameter.name)) comm.broadcast(parameter.value);
  }
  for (const NamedTensor<float>& state : optimizer.state_tensors()) {
    if (!is_split_by_labels(state.name)) comm.broadcast(state.data);
  }
}

}  // namespace haste
