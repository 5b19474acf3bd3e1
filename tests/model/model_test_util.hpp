// Small models and data sets for the model and trainer tests.
#pragma once

#include <algorithm>
#include <haste/model.hpp>
#include <haste/synthetic.hpp>
#include <numeric>
#include <span>
#include <vector>

namespace haste::test_util {

// A learnable synthetic data set: `labels` labels in planted clusters of 8.
inline Dataset small_synthetic(int64_t rows, int64_t features, int64_t labels,
                               int64_t first_row = 0, uint64_t seed = 7) {
  SynthConfig config;
  config.rows = rows;
  config.features = features;
  config.labels = labels;
  config.seed = seed;
  config.cluster_size = 8;
  config.labels_per_row = 3;
  config.features_per_row = 12;
  config.first_row = first_row;
  return make_synthetic(config);
}

// A model config small enough for finite differences: d = 8, groups of 4, fan-in 4.
inline ModelConfig tiny_config() {
  ModelConfig config;
  config.hidden = {8};
  config.activation = Activation::tanh;
  config.group_size = 4;
  config.fan_in = 4;
  config.head_fraction = 0.2;
  return config;
}

// The smallest config the GPU tail kernels take (d = 64, g = 8, k = 32, 20% head), inputs as
// they come (GPU tests feed the CPU encoder's h to the GPU layer).
inline ModelConfig small_gpu_config() {
  ModelConfig config;
  config.hidden = {64};
  config.group_size = 8;
  config.fan_in = 32;
  config.head_fraction = 0.2;
  config.normalize_input = false;
  return config;
}

inline std::vector<int64_t> first_rows(int64_t n) {
  std::vector<int64_t> rows(n);
  std::iota(rows.begin(), rows.end(), 0);
  return rows;
}

// Copies every tensor of `from` into a model rebuilt from its config and shape (what a
// checkpoint round trip does).
inline Model copy_model(const Model& from) {
  auto floats = from.float_tensors();
  auto ints = from.int_tensors();
  auto read_floats = [&](const std::string& name, std::span<const int64_t>, std::span<float> out) {
    for (const auto& t : floats) {
      if (t.name == name) std::copy(t.data.begin(), t.data.end(), out.begin());
    }
  };
  auto read_ints = [&](const std::string& name, std::span<const int64_t>, std::span<int32_t> out) {
    for (const auto& t : ints) {
      if (t.name == name) std::copy(t.data.begin(), t.data.end(), out.begin());
    }
  };
  return Model::from_tensors(from.config(), from.shape(), read_floats, read_ints);
}

// The labels of rows `rows` of `data` through an upload map (original id -> layer id, -1 = not
// this layer's, e.g. cuda::UploadOptions::original_to_model), each row's ids sorted.
inline CsrMatrix mapped_targets(const Dataset& data, std::span<const int64_t> rows,
                                const std::vector<int32_t>& map) {
  CsrMatrix targets;
  for (int64_t row : rows) {
    std::vector<int32_t> labels;
    for (int32_t label : data.labels.row_indices(row)) {
      if (map[label] >= 0) labels.push_back(map[label]);
    }
    std::sort(labels.begin(), labels.end());
    targets.append_row(labels, {});
  }
  return targets;
}

}  // namespace haste::test_util
