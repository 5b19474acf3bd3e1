// Reading checkpoints, whole or label-sharded (see include/haste/checkpoint.hpp).
#include <algorithm>
#include <fstream>
#include <haste/checkpoint.hpp>
#include <haste/error.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "train/checkpoint_format.hpp"

namespace haste {
namespace fs = std::filesystem;
using namespace checkpoint_format;

namespace {

using Json = nlohmann::json;

// The files of the checkpoint at `path` (see the constructor): one, or every shard's in rank
// order.
std::vector<fs::path> checkpoint_files(const fs::path& path) {
  std::error_code ec;
  fs::path index = path;
  if (fs::is_directory(path, ec)) {
    index = path / kShardIndexFileName;
    if (!fs::exists(index, ec)) return {path / kCheckpointFileName};
  } else if (path.filename() != kShardIndexFileName) {
    return {path};
  }
  std::ifstream in(index);
  check(in.good(), "{}: cannot be read", index.string());
  const Json json = Json::parse(in, nullptr, false);
  check(json.is_object() && json.value("format", "") == kIndexFormat &&
            json.value("format_version", "") == kFormatVersion && json.contains("files") &&
            json["files"].is_array() && !json["files"].empty(),
        "{}: not a HASTE shard index (format \"{}\" version {} with a list of files)",
        index.string(), kIndexFormat, kFormatVersion);
  std::vector<fs::path> files;
  for (const Json& name : json["files"]) {
    check(name.is_string(), "{}: \"files\" holds a non-string", index.string());
    files.push_back(index.parent_path() / name.get<std::string>());
  }
  return files;
}

// Checks that `file` is a HASTE checkpoint (of this format version).
void check_format(const SafetensorsFile& file) {
  const std::string name = file.path().string();
  auto format = file.metadata().find("format");
  check(format != file.metadata().end() && format->second == kFormat,
        "{}: a safetensors file, but not a HASTE checkpoint (no metadata format = \"{}\")", name,
        kFormat);
  const std::string& version = file.metadata("format_version");
  check(version == kFormatVersion,
        "{}: checkpoint format version {} is not supported (this haste reads version {})", name,
        version, kFormatVersion);
}

// A metadata value parsed as JSON and handed to `from_json`; errors name the file and key.
template <typename T>
T from_metadata(const SafetensorsFile& file, const char* key) {
  const std::string& text = file.metadata(key);
  Json json = Json::parse(text, nullptr, false);
  check(!json.is_discarded(), "{}: metadata \"{}\" is not valid JSON", file.path().string(), key);
  try {
    return T::from_json(json);
  } catch (const Error& e) {
    fail("{}: metadata \"{}\": {}", file.path().string(), key, e.what());
  }
}

// Model::from_tensors allocates (and zeroes) the model that the stored config and shape describe
// before it reads a tensor, so a corrupt shape would cost whatever memory it declares. Each
// product below is the element count of one stored tensor (encoder.<i>.weight, head.weight,
// tail.weight, labels.model_to_original), so none may exceed what the file's tensors hold.
void check_shape_fits_file(const ModelConfig& config, const ModelShape& shape,
                           const SafetensorsFile& file, int64_t stored) {
  auto check_elements = [&](const char* what, int64_t rows, int64_t cols) {
    int64_t elements = 0;
    check(!__builtin_mul_overflow(rows, cols, &elements) && elements <= stored,
          "{}: metadata \"model_shape\" and \"model_config\" declare {} of {} x {} elements, "
          "but the file holds only {} (corrupt metadata?)",
          file.path().string(), what, rows, cols, stored);
  };
  int64_t in = shape.input_dim;
  for (int64_t out : config.hidden) {
    check_elements("an encoder layer", in, out);
    in = out;
  }
  // With private features, the head reads the upper half of h and the tail the lower half.
  const int64_t d_tail = config.private_features ? in / 2 : in;
  check_elements("the head", shape.head_labels, in - (config.private_features ? d_tail : 0));
  check_elements("the tail", shape.groups, shape.group_size);
  check_elements("the tail", shape.tail_slots(), std::min(shape.fan_in, d_tail));
  check_elements("the label map", shape.num_labels, 1);
}

}  // namespace

Checkpoint::Checkpoint(const fs::path& path) : Checkpoint(checkpoint_files(path)) {}

Checkpoint::Checkpoint(const std::vector<fs::path>& files) : file_(files.front()) {
  check_format(file_);
  for (size_t r = 1; r < files.size(); ++r) {
    other_shards_.emplace_back(files[r]);
    check_format(other_shards_.back());
  }
  model_config_ = from_metadata<ModelConfig>(file_, "model_config");
  model_shape_ = from_metadata<ModelShape>(file_, "model_shape");
}

template <typename T>
void Checkpoint::read(const std::string& name, std::span<const int64_t> shape,
                      std::span<T> out) const {
  // A tensor in every shard's file is split by rows, in rank order; others are in file_ only.
  if (other_shards_.empty() || other_shards_.front().find(name) == nullptr || shape.empty()) {
    auto values = file_.get<T>(name, shape);
    std::copy(values.begin(), values.end(), out.begin());
    return;
  }
  int64_t row_size = 1;
  for (size_t i = 1; i < shape.size(); ++i) row_size *= shape[i];
  int64_t row = 0;
  for (int r = 0; r < shards(); ++r) {
    const SafetensorsFile& file = r == 0 ? file_ : other_shards_[r - 1];
    std::vector<int64_t> part(shape.begin(), shape.end());
    part[0] = file.get(name).shape.empty() ? -1 : file.get(name).shape[0];
    check(part[0] >= 0 && row + part[0] <= shape[0],
          "{}: tensor \"{}\" holds rows {}.. of a tensor of {} rows", file.path().string(), name,
          row, shape[0]);
    auto values = file.get<T>(name, part);
    std::copy(values.begin(), values.end(), out.begin() + row * row_size);
    row += part[0];
  }
  check(row == shape[0], "{}: the shards hold {} rows of tensor \"{}\", the model needs {}",
        file_.path().string(), row, name, shape[0]);
}

Model Checkpoint::load_model() const {
  auto read_floats = [this](const std::string& name, std::span<const int64_t> shape,
                            std::span<float> out) { read(name, shape, out); };
  auto read_ints = [this](const std::string& name, std::span<const int64_t> shape,
                          std::span<int32_t> out) { read(name, shape, out); };
  try {
    int64_t stored = 0;
    for (int r = 0; r < shards(); ++r) {
      for (const TensorView& tensor : (r == 0 ? file_ : other_shards_[r - 1]).tensors()) {
        stored += tensor.numel();
      }
    }
    check_shape_fits_file(model_config_, model_shape_, file_, stored);
    return Model::from_tensors(model_config_, model_shape_, read_floats, read_ints);
  } catch (const Error& e) {
    std::string message = e.what();
    if (message.starts_with(file_.path().string())) throw;
    fail("{}: {}", file_.path().string(), message);
  }
}

bool Checkpoint::has_training_state() const { return file_.metadata().contains("trainer_state"); }

TrainConfig Checkpoint::train_config() const {
  check(has_training_state(),
        "{}: the checkpoint holds no training state (saved for prediction only), so training "
        "cannot resume from it",
        file_.path().string());
  return from_metadata<TrainConfig>(file_, "train_config");
}

void Checkpoint::restore_training(Trainer& trainer) const {
  const std::string name = file_.path().string();
  TrainerState state = from_metadata<TrainerState>(file_, "trainer_state");
  for (auto& tensor : trainer.optimizer().state_tensors()) {
    read<float>(kOptimizerPrefix + tensor.name, tensor.shape, tensor.data);
  }
  trainer.restore(state);
  const std::string& steps = file_.metadata("optimizer_steps");
  try {
    trainer.optimizer().set_steps_taken(std::stoll(steps));
  } catch (const std::exception&) {
    fail("{}: metadata \"optimizer_steps\" = \"{}\" is not a number", name, steps);
  }
}

std::optional<Featurizer> Checkpoint::featurizer() const {
  const TensorView* bytes = file_.find(kVocabularyTensor);
  if (bytes == nullptr) return std::nullopt;
  auto text = bytes->values<uint8_t>();
  return Featurizer::from_vocabulary_json(
      std::string_view(reinterpret_cast<const char*>(text.data()), text.size()),
      file_.path().string() + ":" + kVocabularyTensor);
}

}  // namespace haste
