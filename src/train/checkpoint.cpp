#include <algorithm>
#include <haste/checkpoint.hpp>
#include <haste/error.hpp>
#include <nlohmann/json.hpp>
#include <string>

namespace haste {
namespace fs = std::filesystem;

namespace {

using Json = nlohmann::json;

constexpr char kFormat[] = "haste-checkpoint";
constexpr char kFormatVersion[] = "1";
constexpr char kOptimizerPrefix[] = "optimizer.";
constexpr char kVocabularyTensor[] = "featurizer.vocabulary";

fs::path checkpoint_file(const fs::path& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) ? path / kCheckpointFileName : path;
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
                           const SafetensorsFile& file) {
  int64_t stored = 0;
  for (const TensorView& tensor : file.tensors()) stored += tensor.numel();
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

void save_checkpoint(const fs::path& file, const Model& model, Trainer* trainer,
                     const Featurizer* featurizer) {
  SafetensorsWriter writer(file);
  writer.set_metadata("format", kFormat);
  writer.set_metadata("format_version", kFormatVersion);
  writer.set_metadata("model_config", model.config().to_json().dump());
  writer.set_metadata("model_shape", model.shape().to_json().dump());
  for (const auto& tensor : model.float_tensors())
    writer.add<float>(tensor.name, tensor.shape, tensor.data);
  for (const auto& tensor : model.int_tensors())
    writer.add<int32_t>(tensor.name, tensor.shape, tensor.data);

  if (trainer != nullptr) {
    writer.set_metadata("train_config", trainer->config().to_json().dump());
    writer.set_metadata("trainer_state", trainer->state().to_json().dump());
    writer.set_metadata("optimizer_steps", std::to_string(trainer->optimizer().steps_taken()));
    for (const auto& tensor : trainer->optimizer().state_tensors()) {
      writer.add<float>(kOptimizerPrefix + tensor.name, tensor.shape,
                        std::span<const float>(tensor.data));
    }
  }
  std::string vocabulary;
  if (featurizer != nullptr) {
    vocabulary = featurizer->to_vocabulary_json();
    writer.add<uint8_t>(
        kVocabularyTensor, {static_cast<int64_t>(vocabulary.size())},
        std::span(reinterpret_cast<const uint8_t*>(vocabulary.data()), vocabulary.size()));
  }
  writer.commit();
}

Checkpoint::Checkpoint(const fs::path& path) : file_(checkpoint_file(path)) {
  const std::string name = file_.path().string();
  auto format = file_.metadata().find("format");
  check(format != file_.metadata().end() && format->second == kFormat,
        "{}: a safetensors file, but not a HASTE checkpoint (no metadata format = \"{}\")", name,
        kFormat);
  const std::string& version = file_.metadata("format_version");
  check(version == kFormatVersion,
        "{}: checkpoint format version {} is not supported (this haste reads version {})", name,
        version, kFormatVersion);
  model_config_ = from_metadata<ModelConfig>(file_, "model_config");
  model_shape_ = from_metadata<ModelShape>(file_, "model_shape");
}

Model Checkpoint::load_model() const {
  auto read_floats = [this](const std::string& name, std::span<const int64_t> shape,
                            std::span<float> out) {
    auto values = file_.get<float>(name, shape);
    std::copy(values.begin(), values.end(), out.begin());
  };
  auto read_ints = [this](const std::string& name, std::span<const int64_t> shape,
                          std::span<int32_t> out) {
    auto values = file_.get<int32_t>(name, shape);
    std::copy(values.begin(), values.end(), out.begin());
  };
  try {
    check_shape_fits_file(model_config_, model_shape_, file_);
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
    auto values = file_.get<float>(kOptimizerPrefix + tensor.name, tensor.shape);
    std::copy(values.begin(), values.end(), tensor.data.begin());
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
