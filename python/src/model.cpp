// _core.Model: a trained HASTE model with its trainer. Training and prediction run with the GIL
// released; Ctrl-C is honoured between epochs.
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <filesystem>
#include <haste/checkpoint.hpp>
#include <haste/config_file.hpp>
#include <haste/error.hpp>
#include <haste/model.hpp>
#include <haste/trainer.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "matrices.hpp"

namespace haste::python {
namespace {

namespace fs = std::filesystem;

nb::dict to_dict(const EpochReport& report) {
  nb::dict out;
  out["epoch"] = report.epoch;
  out["step"] = report.step;
  out["loss"] = report.mean_loss;
  out["learning_rate"] = report.learning_rate;
  out["train_seconds"] = report.train_seconds;
  out["examples_per_second"] = report.examples_per_second;
  out["eval_seconds"] = report.eval_seconds;
  out["dst_changed_slots"] = report.dst_changed_slots;
  if (report.metrics) {
    for (const auto& [name, value] : report.metrics->named_values()) out[name.c_str()] = value;
  }
  return out;
}

// A model and, once trained here, the trainer whose state a checkpoint stores for resuming.
class TrainedModel {
 public:
  // `config_json` holds {"model": ModelConfig JSON, "train": TrainConfig JSON}.
  static TrainedModel train(const std::string& config_json, const Dataset& train, Dataset* test) {
    const nlohmann::json config = nlohmann::json::parse(config_json);
    const ModelConfig model_config = ModelConfig::from_json(config.at("model"));
    const TrainConfig train_config = TrainConfig::from_json(config.at("train"));
    if (test) widen(*test, train.num_features(), train.num_labels());
    TrainedModel trained;
    std::vector<EpochReport> reports;
    {
      nb::gil_scoped_release unlocked;
      trained.model_ = std::make_unique<Model>(Model::build(model_config, train));
      trained.trainer_ = std::make_unique<Trainer>(train_config, *trained.model_);
      trained.trainer_->fit(train, test, [&reports](const EpochReport& report) {
        reports.push_back(report);
        nb::gil_scoped_acquire locked;
        if (PyErr_CheckSignals() != 0) throw nb::python_error();
      });
    }
    for (const EpochReport& report : reports) trained.history_.append(to_dict(report));
    return trained;
  }

  static TrainedModel load(const fs::path& path) {
    TrainedModel loaded;
    {
      nb::gil_scoped_release unlocked;
      Checkpoint checkpoint(path);
      loaded.model_ = std::make_unique<Model>(checkpoint.load_model());
      if (checkpoint.has_training_state()) {
        loaded.train_config_ = checkpoint.train_config().to_json().dump();
      }
    }
    return loaded;
  }

  void save(const fs::path& file) const {
    nb::gil_scoped_release unlocked;
    save_checkpoint(file, *model_, trainer_.get());
  }

  // (labels, logits), see export_top_k.
  nb::tuple predict(Dataset& inputs, int k) const {
    const ModelShape& shape = model_->shape();
    widen(inputs, shape.input_dim, shape.num_labels);
    Rankings rankings;
    {
      nb::gil_scoped_release unlocked;
      rankings = model_->predict(inputs, k);
    }
    return export_top_k(rankings, k);
  }

  // Read-only NumPy views of every stored tensor, keeping this model alive.
  nb::dict tensors(nb::handle self) const {
    nb::dict out;
    auto add = [&](const auto& tensor) {
      using T = std::remove_const_t<typename std::decay_t<decltype(tensor.data)>::element_type>;
      std::vector<size_t> shape(tensor.shape.begin(), tensor.shape.end());
      out[tensor.name.c_str()] =
          nb::ndarray<nb::numpy, const T>(tensor.data.data(), shape.size(), shape.data(), self);
    };
    for (const auto& tensor : model_->float_tensors()) add(tensor);
    for (const auto& tensor : model_->int_tensors()) add(tensor);
    return out;
  }

  std::string model_config() const { return model_->config().to_json().dump(); }
  std::string shape() const { return model_->shape().to_json().dump(); }
  std::optional<std::string> train_config() const {
    if (trainer_) return trainer_->config().to_json().dump();
    return train_config_;
  }
  std::vector<std::pair<std::string, int64_t>> size() const { return model_->size().parts(); }
  nb::list history() const { return history_; }

 private:
  std::unique_ptr<Model> model_;
  std::unique_ptr<Trainer> trainer_;
  std::optional<std::string> train_config_;  // of a loaded checkpoint that has one
  nb::list history_;                         // one dict per epoch trained here
};

std::string default_config() {
  return nlohmann::json{{"model", ModelConfig{}.to_json()}, {"train", TrainConfig{}.to_json()}}
      .dump();
}

std::string config_file(const fs::path& file) {
  const RunConfig config = load_run_config(file);
  return nlohmann::json{{"model", config.model.to_json()}, {"train", config.train.to_json()}}
      .dump();
}

}  // namespace

void bind_model(nb::module_& m) {
  m.def("default_config", &default_config);
  m.def("load_config_file", &config_file, nb::arg("file"));
  nb::class_<TrainedModel>(m, "Model", "A trained model (see haste.Classifier)")
      .def_static("train", &TrainedModel::train, nb::arg("config_json"), nb::arg("train"),
                  nb::arg("test").none())
      .def_static("load", &TrainedModel::load, nb::arg("path"))
      .def("save", &TrainedModel::save, nb::arg("file"))
      .def("predict", &TrainedModel::predict, nb::arg("inputs"), nb::arg("k"))
      .def("tensors",
           [](nb::handle self) { return nb::cast<const TrainedModel&>(self).tensors(self); })
      .def_prop_ro("model_config", &TrainedModel::model_config)
      .def_prop_ro("shape", &TrainedModel::shape)
      .def_prop_ro("train_config", &TrainedModel::train_config)
      .def_prop_ro("size", &TrainedModel::size)
      .def_prop_ro("history", &TrainedModel::history);
}

}  // namespace haste::python
