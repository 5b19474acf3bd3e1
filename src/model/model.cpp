// The CPU model: building it from data (label renumbering, grouping, initialisation), one
// training step, prediction and the named-tensor interface (see include/haste/model.hpp).
#include <algorithm>
#include <cmath>
#include <haste/error.hpp>
#include <haste/label_grouping.hpp>
#include <haste/model.hpp>
#include <numeric>

#include "data/random.hpp"
#include "model/encoder.hpp"
#include "model/output_layer.hpp"
#include "model/output_shards.hpp"

namespace haste {

struct Model::Impl {
  Impl(const ModelConfig& config_in, const ModelShape& shape_in)
      : config(config_in),
        shape(shape_in),
        encoder(shape.sparse_input, shape.input_dim, config.hidden, config.activation,
                config.normalize_input),
        output(shape, config.hidden.back(), config.private_features),
        shards(output, 1),
        model_to_original(shape.num_labels) {}

  // original_to_model from model_to_original, checking that the latter is a permutation.
  void index_labels() {
    original_to_model.assign(shape.num_labels, -1);
    for (int64_t m = 0; m < shape.num_labels; ++m) {
      const int32_t original = model_to_original[m];
      check(original >= 0 && original < shape.num_labels && original_to_model[original] < 0,
            "model: labels.model_to_original is not a permutation of the {} labels (entry {} is "
            "{})",
            shape.num_labels, m, original);
      original_to_model[original] = static_cast<int32_t>(m);
    }
  }

  // The batch's targets in model ids: rows `rows` of `labels` (all rows when empty).
  void map_targets(const CsrMatrix& labels, std::span<const int64_t> rows, int64_t B) {
    check(labels.cols == shape.num_labels,
          "model: the labels have {} columns but the model has {} labels", labels.cols,
          shape.num_labels);
    targets.rows = 0;
    targets.cols = shape.num_labels;
    targets.indptr.assign(1, 0);
    targets.indices.clear();
    for (int64_t b = 0; b < B; ++b) {
      const size_t first = targets.indices.size();
      for (int32_t label : labels.row_indices(rows.empty() ? b : rows[b])) {
        targets.indices.push_back(original_to_model[label]);
      }
      std::sort(targets.indices.begin() + static_cast<int64_t>(first), targets.indices.end());
      targets.indptr.push_back(static_cast<int64_t>(targets.indices.size()));
      ++targets.rows;
    }
  }

  double step(const InputRows& inputs, uint64_t dropout_seed) {
    const int64_t B = inputs.size(), d = encoder.output_dim();
    std::span<const float> encoded = encoder.forward(inputs, activations);
    h.assign(encoded.begin(), encoded.end());
    // Inverted dropout: kept units are scaled by 1 / (1 - p); one random stream per batch row.
    const double p = config.dropout;
    if (p > 0) {
      mask.resize(B * d);
      for (int64_t b = 0; b < B; ++b) {
        Rng rng(hash_key(dropout_seed, b));
        for (int64_t j = 0; j < d; ++j) {
          mask[b * d + j] = rng.uniform() < p ? 0.0f : static_cast<float>(1.0 / (1.0 - p));
        }
      }
      for (int64_t i = 0; i < B * d; ++i) h[i] *= mask[i];
    }
    dh.resize(B * d);
    const double loss = shards.forward_backward(output, B, h, targets, dh);
    if (p > 0) {
      for (int64_t i = 0; i < B * d; ++i) dh[i] *= mask[i];
    }
    encoder.backward(inputs, activations, dh);
    return loss;
  }

  ModelConfig config;
  ModelShape shape;
  model::Encoder encoder;
  model::OutputLayer output;
  model::OutputShards shards;  // how the output layer's labels are split (1: not at all)
  std::vector<int32_t> model_to_original;  // [L]
  std::vector<int32_t> original_to_model;  // [L], derived
  model::EncoderActivations activations;   // of the last training batch
  CsrMatrix targets;                       // the batch's labels in model ids
  std::vector<float> h, dh, mask;          // [B, d] of the last step
};

namespace {

// Labels by decreasing training frequency, ties by id.
std::vector<int32_t> labels_by_frequency(std::span<const int64_t> counts) {
  std::vector<int32_t> order(counts.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return counts[a] > counts[b]; });
  return order;
}

int64_t round_up(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

int64_t head_size(const ModelConfig& config, std::span<const int64_t> counts) {
  const auto L = static_cast<int64_t>(counts.size());
  if (config.output == OutputKind::dense) return L;
  switch (config.head_rule) {
    case HeadRule::fraction:
      return std::min(
          L,
          round_up(static_cast<int64_t>(std::ceil(config.head_fraction * static_cast<double>(L))),
                   config.group_size));
    case HeadRule::count:
      return std::min(L, round_up(config.head_count, config.group_size));
    case HeadRule::min_frequency:
      return std::count_if(counts.begin(), counts.end(),
                           [&](int64_t c) { return c >= config.head_min_frequency; });
  }
  return 0;
}

// The logit of a label's smoothed training frequency: the best constant score for it, so the
// loss starts near what a bias-only model reaches instead of L * log 2.
float prior_logit(int64_t count, int64_t N) {
  const double p = (static_cast<double>(count) + 0.5) / (static_cast<double>(N) + 1.0);
  return static_cast<float>(std::log(p / (1.0 - p)));
}

LabelGrouping group_tail(const Dataset& train, std::span<const int32_t> tail_labels, int64_t g,
                         uint64_t seed) {
  if (train.dense.cols > 0) {
    return group_labels(pifa_label_vectors(train.dense, train.labels), tail_labels,
                        static_cast<int>(g), seed);
  }
  return group_labels(pifa_label_vectors(train.features, train.labels), tail_labels,
                      static_cast<int>(g), seed);
}

}  // namespace

InputRows InputRows::of(const Dataset& data, std::span<const int64_t> rows) {
  InputRows inputs;
  if (data.dense.cols > 0) {
    inputs.dense = &data.dense;
  } else {
    inputs.sparse = &data.features;
  }
  inputs.rows = rows;
  return inputs;
}

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

Model Model::build(const ModelConfig& config, const Dataset& train) {
  config.validate();
  const int64_t N = train.num_points(), L = train.num_labels();
  check(N > 0 && L > 0, "model: the training set needs rows and labels (it has {} rows, {} labels)",
        N, L);
  check(train.num_features() > 0, "model: the training set has no features");
  const bool sparse_input = train.dense.cols == 0;
  check(sparse_input ? train.features.rows == N : train.dense.rows == N,
        "model: the training set has {} label rows but a different number of feature rows", N);

  const std::vector<int64_t> counts = label_counts(train.labels);
  const std::vector<int32_t> by_frequency = labels_by_frequency(counts);
  const int64_t H = head_size(config, counts);
  const std::span<const int32_t> tail_labels(by_frequency.data() + H, by_frequency.size() - H);
  LabelGrouping grouping;
  grouping.group_size = static_cast<int32_t>(config.group_size);
  if (!tail_labels.empty()) {
    grouping = group_tail(train, tail_labels, config.group_size, hash_key(config.seed, 0x9c));
  }

  ModelShape shape;
  shape.sparse_input = sparse_input;
  shape.input_dim = train.num_features();
  shape.num_labels = L;
  shape.head_labels = H;
  shape.groups = grouping.num_groups();
  shape.group_size = config.group_size;
  shape.fan_in = config.fan_in;
  auto impl = std::make_unique<Impl>(config, shape);
  std::copy_n(by_frequency.begin(), H, impl->model_to_original.begin());
  std::copy(grouping.order.begin(), grouping.order.end(), impl->model_to_original.begin() + H);
  impl->index_labels();

  std::vector<float> bias(L);
  for (int64_t m = 0; m < L; ++m) bias[m] = prior_logit(counts[impl->model_to_original[m]], N);
  impl->encoder.initialize(hash_key(config.seed, 0xe1));
  impl->output.initialize(bias, hash_key(config.seed, 0x0a));
  return Model(std::move(impl));
}

Model Model::from_tensors(const ModelConfig& config, const ModelShape& shape,
                          const FloatTensorReader& read_floats, const IntTensorReader& read_ints) {
  config.validate();
  check(shape.group_size == config.group_size && shape.fan_in == config.fan_in,
        "model: the shape (g = {}, k = {}) disagrees with the config (g = {}, k = {})",
        shape.group_size, shape.fan_in, config.group_size, config.fan_in);
  Model model(std::make_unique<Impl>(config, shape));
  for (const Parameter& parameter : model.parameters()) {
    read_floats(parameter.name, parameter.shape, parameter.value);
  }
  const GroupSharedShape tail = model.tail_shape();
  if (tail.G > 0) {
    const std::vector<int64_t> index_shape{tail.G, tail.k};
    read_ints("tail.indices", index_shape, model.impl_->output.tail.indices);
    validate_group_indices(tail, model.impl_->output.tail.indices);
  }
  const std::vector<int64_t> map_shape{shape.num_labels};
  read_ints("labels.model_to_original", map_shape, model.impl_->model_to_original);
  model.impl_->index_labels();
  return model;
}

const ModelConfig& Model::config() const { return impl_->config; }
const ModelShape& Model::shape() const { return impl_->shape; }
int64_t Model::hidden_dim() const { return impl_->encoder.output_dim(); }

double Model::compute_gradients(const InputRows& inputs, const CsrMatrix& labels,
                                uint64_t dropout_seed) {
  check(labels.rows == inputs.size(), "model: {} input rows but {} label rows", inputs.size(),
        labels.rows);
  impl_->map_targets(labels, {}, inputs.size());
  return impl_->step(inputs, dropout_seed);
}

double Model::compute_gradients(const Dataset& data, std::span<const int64_t> rows,
                                uint64_t dropout_seed) {
  for (int64_t row : rows) {
    check(row >= 0 && row < data.num_points(), "model: batch row {} is outside the {} rows", row,
          data.num_points());
  }
  impl_->map_targets(data.labels, rows, static_cast<int64_t>(rows.size()));
  return impl_->step(InputRows::of(data, rows), dropout_seed);
}

Rankings Model::predict(const InputRows& inputs, int k) const {
  check(k >= 1, "predict: k = {} must be at least 1", k);
  const ModelShape& s = impl_->shape;
  const int64_t H = s.head_labels, slots = s.tail_slots();
  // Rows per chunk: the chunk's logits stay within ~64 MB whatever L is.
  const int64_t chunk =
      std::clamp<int64_t>((int64_t{1} << 24) / std::max<int64_t>(1, H + slots), 1, 256);
  model::EncoderActivations activations;  // local: a const model serves several threads
  Rankings rankings;
  rankings.cols = s.num_labels;
  std::vector<std::vector<int32_t>> best;
  std::vector<std::vector<float>> best_scores;
  for (int64_t first = 0; first < inputs.size(); first += chunk) {
    const int64_t B = std::min(chunk, inputs.size() - first);
    InputRows part = inputs;
    part.rows = inputs.rows.subspan(first, B);
    std::span<const float> h = impl_->encoder.forward(part, activations);
    impl_->shards.top_k(impl_->output, B, h, k, best, best_scores);
    for (int64_t b = 0; b < B; ++b) {
      for (int32_t& label : best[b]) label = impl_->model_to_original[label];
      rankings.append_row(best[b], best_scores[b]);
    }
  }
  return rankings;
}

Rankings Model::predict(const Dataset& data, int k) const {
  const int64_t N = data.dense.cols > 0 ? data.dense.rows : data.features.rows;
  std::vector<int64_t> rows(N);
  std::iota(rows.begin(), rows.end(), 0);
  return predict(InputRows::of(data, rows), k);
}

std::vector<Parameter> Model::parameters() {
  std::vector<Parameter> out;
  auto& layers = impl_->encoder.layers();
  for (size_t i = 0; i < layers.size(); ++i) {
    model::DenseLayer& layer = layers[i];
    const std::string prefix = fmt::format("encoder.{}.", i);
    out.push_back({prefix + "weight",
                   {layer.in, layer.out},
                   layer.weight,
                   layer.dweight,
                   i == 0 && impl_->shape.sparse_input});
    out.push_back({prefix + "bias", {layer.out}, layer.bias, layer.dbias, false});
  }
  model::OutputLayer& o = impl_->output;
  out.push_back(
      {"head.weight", {o.head_labels(), o.head_width()}, o.head_weight, o.dhead_weight, false});
  out.push_back({"head.bias", {o.head_labels()}, o.head_bias, o.dhead_bias, false});
  if (o.tail.shape.G > 0) {
    const int64_t slots = o.tail.shape.labels();
    out.push_back({"tail.weight", {slots, o.tail.shape.k}, o.tail.weights, o.dtail_weight, false});
    out.push_back({"tail.bias", {slots}, o.tail.bias, o.dtail_bias, false});
  }
  return out;
}

std::vector<NamedTensor<const float>> Model::float_tensors() const {
  std::vector<NamedTensor<const float>> out;
  for (const Parameter& p : const_cast<Model*>(this)->parameters()) {
    out.push_back({p.name, p.shape, p.value});
  }
  return out;
}

std::vector<NamedTensor<const int32_t>> Model::int_tensors() const {
  const GroupSharedParams<float>& t = impl_->output.tail;
  std::vector<NamedTensor<const int32_t>> out;
  if (t.shape.G > 0) out.push_back({"tail.indices", {t.shape.G, t.shape.k}, t.indices});
  out.push_back({"labels.model_to_original", {impl_->shape.num_labels}, impl_->model_to_original});
  return out;
}

void Model::set_label_shards(int shards) {
  impl_->shards = model::OutputShards(impl_->output, shards);
}

void Model::set_label_shards(shard::Communicator& comm) {
  impl_->shards = model::OutputShards(impl_->output, comm);
}

int Model::label_shards() const { return impl_->shards.size(); }

std::span<const int32_t> Model::touched_rows() const { return impl_->encoder.touched_rows(); }
GroupSharedShape Model::tail_shape() const { return impl_->output.tail.shape; }
GroupSharedParams<float>& Model::tail() { return impl_->output.tail; }
const GroupSharedParams<float>& Model::tail() const { return impl_->output.tail; }
TailBatch Model::last_tail_batch() const { return impl_->output.last_tail_batch(); }
void Model::keep_tail_dz(bool keep) { impl_->output.keep_tail_dz = keep; }
std::span<const int32_t> Model::model_to_original() const { return impl_->model_to_original; }

ModelSize Model::size() const {
  ModelSize size;
  for (const model::DenseLayer& layer : impl_->encoder.layers()) {
    size.encoder_parameters += layer.in * layer.out + layer.out;
  }
  const model::OutputLayer& o = impl_->output;
  size.head_parameters = o.head_labels() * (o.head_width() + 1);
  if (o.tail.shape.G > 0) {
    size.tail_parameters = o.tail.shape.labels() * (o.tail.shape.k + 1);
    size.tail_index_bytes = o.tail.shape.G * o.tail.shape.k * 4;
  }
  size.encoder_bytes = size.encoder_parameters * 4;
  size.head_bytes = size.head_parameters * 4;
  size.tail_weight_bytes = size.tail_parameters * 4;
  size.label_map_bytes = impl_->shape.num_labels * 4;
  return size;
}

std::vector<std::pair<std::string, int64_t>> ModelSize::parts() const {
  return {{"encoder", encoder_bytes},
          {"head", head_bytes},
          {"tail.weight", tail_weight_bytes},
          {"tail.indices", tail_index_bytes},
          {"labels", label_map_bytes}};
}

}  // namespace haste
