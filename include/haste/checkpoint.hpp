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
// Prediction reads only the model's tensors: the optimizer state (twice the model's size for
// AdamW) is never touched, and the file is memory-mapped, so a big model opens at once. Writing
// goes through a temporary file renamed into place: a crash mid-write leaves the previous
// checkpoint intact under the final name.
#pragma once

#include <filesystem>
#include <haste/featurize.hpp>
#include <haste/model.hpp>
#include <haste/safetensors.hpp>
#include <haste/trainer.hpp>
#include <optional>

namespace haste {

inline constexpr char kCheckpointFileName[] = "model.safetensors";

// Writes `model` to `file`; with `trainer`, also its config, state and optimizer state (for
// --resume); with `featurizer`, its vocabulary.
void save_checkpoint(const std::filesystem::path& file, const Model& model,
                     Trainer* trainer = nullptr, const Featurizer* featurizer = nullptr);

class Checkpoint {
 public:
  // `path` is a checkpoint file or a directory holding kCheckpointFileName. Checks the format
  // and version; throws haste::Error naming the file for anything that is not a checkpoint.
  explicit Checkpoint(const std::filesystem::path& path);

  const SafetensorsFile& file() const { return file_; }
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
  SafetensorsFile file_;
  ModelConfig model_config_;
  ModelShape model_shape_;
};

}  // namespace haste
