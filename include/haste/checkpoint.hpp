// Checkpoints: a trained model, and optionally everything needed to resume its training, in
// one safetensors file (include/haste/safetensors.hpp), so PyTorch/NumPy users can open it too.
//
// Tensors:
//   <parameter name>            the model's float parameters and int32 tensors, under the names
//                               Model uses ("encoder.0.weight", "tail.indices", ...)
//   optimizer.<state name>      optimizer state ("optimizer.adam.m.tail.weight", ...), resume only
//   featurizer.vocabulary       U8 bytes of the featurizer's vocabulary JSON, when saved with one,
//                               so `haste predict --raw` turns text into features by itself
// Metadata (strings; JSON where structured):
//   format = "haste-checkpoint", format_version = "1", model_config, model_shape,
//   and for resuming: train_config, trainer_state, optimizer_steps.
//
// A label-sharded run (TrainConfig::shards, DESIGN.md 11) writes one file per shard instead:
//   model-step<S>-shard<r>-of<P>.safetensors   shard r's rows of head.*, tail.* and of their
//                                              optimizer state (split_labels' stretches); rank
//                                              0's file also holds every other tensor
//   model.shards.json                          the index: format, shard count, step, file names
// Each shard file carries the metadata above plus "label_shard" (its stretches, JSON). The
// index is written last, atomically, and names files of one step only, so a crash while the
// shards are written leaves the previous step's checkpoint whole. Checkpoint reads either
// kind: a sharded checkpoint's tensors are stitched back together in rank order, so it loads
// on any number of shards, and on the unsharded CPU path.
//
// Prediction reads only the model's tensors: the optimizer state (twice the model's size for
// AdamW) is never touched, and the file is memory-mapped, so a big model opens at once. Writing
// goes through a temporary file renamed into place: a crash mid-write leaves the previous
// checkpoint intact under the final name.
#pragma once

#include <filesystem>
#include <haste/featurize.hpp>
#include <haste/model.hpp>
#include <haste/safetensors.hpp>
#include <haste/shard/communicator.hpp>
#include <haste/trainer.hpp>
#include <optional>
#include <span>
#include <vector>

namespace haste {

inline constexpr char kCheckpointFileName[] = "model.safetensors";
inline constexpr char kShardIndexFileName[] = "model.shards.json";

// Writes `model` to `file`; with `trainer`, also its config, state and optimizer state (for
// --resume); with `featurizer`, its vocabulary.
void save_checkpoint(const std::filesystem::path& file, const Model& model,
                     Trainer* trainer = nullptr, const Featurizer* featurizer = nullptr);

// The checkpoint of a run in `directory`: kCheckpointFileName for 1 shard, else one file per
// shard and the index. Removes the files of the other kind and of earlier steps.
void save_run_checkpoint(const std::filesystem::path& directory, const Model& model, int shards,
                         Trainer* trainer = nullptr, const Featurizer* featurizer = nullptr);

// The same checkpoint written by a multi-process run (Trainer::join): each rank writes its own
// shard's file, and once every rank has, rank 0 writes the index and removes older files, so
// `directory` must be on a file system every rank sees. Every rank must call it.
void save_run_checkpoint(const std::filesystem::path& directory, const Model& model,
                         shard::Communicator& comm, Trainer* trainer = nullptr,
                         const Featurizer* featurizer = nullptr);

// Whether `directory` holds a checkpoint of either kind.
bool has_checkpoint(const std::filesystem::path& directory);

class Checkpoint {
 public:
  // `path` is a checkpoint file, a shard index, or a directory holding either (the index
  // first). Checks the format and version; throws haste::Error naming the file for anything
  // that is not a checkpoint.
  explicit Checkpoint(const std::filesystem::path& path);

  // The (first shard's) file: metadata, and every tensor that is not split by labels.
  const SafetensorsFile& file() const { return file_; }
  int shards() const { return 1 + static_cast<int>(other_shards_.size()); }
  const ModelConfig& model_config() const { return model_config_; }
  const ModelShape& model_shape() const { return model_shape_; }

  // The model, rebuilt from the stored config and tensors.
  Model load_model() const;

  // Whether the file carries what --resume needs (it does when saved with a trainer).
  bool has_training_state() const;
  TrainConfig train_config() const;
  // Loads the optimizer state and the trainer state into `trainer`, which must have been built
  // with train_config() (epochs may differ) and the model of load_model().
  void restore_training(Trainer& trainer) const;

  // The featurizer saved with the model, if any.
  std::optional<Featurizer> featurizer() const;

 private:
  explicit Checkpoint(const std::vector<std::filesystem::path>& files);  // shard 0 first
  // Tensor `name` of `shape` into `out`: from file_, or stitched from every shard's rows.
  template <typename T>
  void read(const std::string& name, std::span<const int64_t> shape, std::span<T> out) const;

  SafetensorsFile file_;
  std::vector<SafetensorsFile> other_shards_;  // shards 1..P-1 of a sharded checkpoint
  ModelConfig model_config_;
  ModelShape model_shape_;
};

}  // namespace haste
