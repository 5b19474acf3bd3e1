// A HASTE model on the CPU (DESIGN.md 2, 3, 7): encoder -> h -> dense head + group-shared tail,
// trained with binary cross-entropy. Labels are renumbered once, when the model is built (head
// labels by decreasing frequency, then tail labels group by group); every input and output of
// this API uses ORIGINAL label ids, the renumbering never leaks out.
//
//   x [B, F] (sparse rows, or dense rows of width D)
//     -> encoder: a = act(x W0 + b0), then a = act(a Wi + bi) for further layers  -> h [B, d]
//     -> dropout on h (training only)
//     -> head: z_head = h_head W_head^T + b_head   (H labels, a dense layer)
//     -> tail: group-shared fixed fan-in layer     (G groups of g labels, fan-in k)
//   With private features the head reads h[:, d/2:d] and the tail h[:, 0:d/2].
//   The dense output layer (the quality baseline) is the same model with every label in the head.
//
// Parameters are exposed by name, in a fixed order, so that optimizers, checkpoint writers and
// readers can treat them generically:
//   encoder.<i>.weight [in, out], encoder.<i>.bias [out]   (row f of encoder.0.weight is the
//                                                          embedding of input feature f)
//   head.weight [H, d_head], head.bias [H]
//   tail.weight [G*g, k], tail.bias [G*g]                  (absent when G = 0)
// and int32 tensors
//   tail.indices [G, k]                 sorted distinct features of h_tail per group
//   labels.model_to_original [L]        model label id -> original label id
#pragma once

#include <cstdint>
#include <functional>
#include <haste/dataset.hpp>
#include <haste/group_shared.hpp>
#include <haste/metrics.hpp>
#include <haste/sparse.hpp>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <vector>

namespace haste {

namespace shard {
class Communicator;
}

enum class Activation { relu, tanh };
enum class OutputKind { haste, dense };
// How the head size is chosen: a fraction of the labels or a count (both rounded up to a
// multiple of the group size, at most L), or every label seen at least `head_min_frequency`
// times in training.
enum class HeadRule { fraction, count, min_frequency };

// What the user chooses. Serialisable, because checkpoints store it.
struct ModelConfig {
  std::vector<int64_t> hidden = {512};  // encoder layer widths; the last one is d
  Activation activation = Activation::relu;
  double dropout = 0.0;  // dropout probability on h while training
  // Scale each input row to unit L2 norm before the encoder. Raw bag-of-words counts (the
  // MULAN sets) otherwise start training with huge activations; unit-norm tf-idf rows are
  // unchanged. Applied inside the model, so prediction sees the same inputs as training.
  bool normalize_input = true;
  OutputKind output = OutputKind::haste;
  HeadRule head_rule = HeadRule::fraction;
  double head_fraction = 0.1;
  int64_t head_count = 0;
  int64_t head_min_frequency = 0;
  int64_t group_size = 32;  // g
  int64_t fan_in = 64;      // k; must be <= the tail's width of h (d, or d/2 with private features)
  bool private_features = false;
  uint64_t seed = 1;  // initial weights, tail indices and label grouping

  // Throws haste::Error naming the bad setting and the accepted values.
  void validate() const;
  nlohmann::json to_json() const;
  // Unknown keys and bad values are errors; missing keys keep their defaults.
  static ModelConfig from_json(const nlohmann::json& json);
};

std::string to_string(Activation activation);
std::string to_string(OutputKind output);
std::string to_string(HeadRule rule);
Activation parse_activation(const std::string& name);  // throws haste::Error listing the choices
OutputKind parse_output_kind(const std::string& name);
HeadRule parse_head_rule(const std::string& name);

// What Model::build derived from the training data; with the config it fixes every tensor shape,
// so a model can be rebuilt from a checkpoint without the data. Serialisable.
struct ModelShape {
  bool sparse_input = true;  // CSR (tf-idf) rows, or dense rows (.npy)
  int64_t input_dim = 0;     // F or D
  int64_t num_labels = 0;    // L, the original label space
  int64_t head_labels = 0;   // H
  int64_t groups = 0;        // G
  int64_t group_size = 1;    // g
  int64_t fan_in = 1;        // k

  int64_t tail_labels() const { return num_labels - head_labels; }  // real tail labels
  int64_t tail_slots() const { return groups * group_size; }        // with padding
  nlohmann::json to_json() const;
  static ModelShape from_json(const nlohmann::json& json);
};

// A float parameter with its gradient. When `row_sparse` is true (the sparse input layer), a
// step's gradient is nonzero only in the rows listed by Model::touched_rows(); an optimizer
// should update only those rows (lazily), everything else is zero.
struct Parameter {
  std::string name;
  std::vector<int64_t> shape;
  std::span<float> value;
  std::span<float> grad;
  bool row_sparse = false;
};

template <typename T>
struct NamedTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::span<T> data;
};

// Bytes and parameter counts per part (fp32 weights, int32 indices).
struct ModelSize {
  int64_t encoder_parameters = 0, head_parameters = 0, tail_parameters = 0;
  int64_t encoder_bytes = 0, head_bytes = 0, tail_weight_bytes = 0, tail_index_bytes = 0;
  int64_t label_map_bytes = 0;

  int64_t output_layer_parameters() const { return head_parameters + tail_parameters; }
  // Head + tail weights and biases + tail indices: what HASTE shrinks compared with a dense
  // output layer (whose figure is L * (d + 1) * 4 bytes).
  int64_t output_layer_bytes() const { return head_bytes + tail_weight_bytes + tail_index_bytes; }
  int64_t total_bytes() const { return encoder_bytes + output_layer_bytes() + label_map_bytes; }
  // [("encoder", bytes), ("head", ...), ("tail.weight", ...), ("tail.indices", ...),
  //  ("labels", ...)]: for printing.
  std::vector<std::pair<std::string, int64_t>> parts() const;
};

// The inputs of a batch: rows `rows` of a sparse feature matrix or of a dense one.
struct InputRows {
  const CsrMatrix* sparse = nullptr;
  const DenseMatrix* dense = nullptr;
  std::span<const int64_t> rows;

  static InputRows of(const Dataset& data, std::span<const int64_t> rows);
  int64_t size() const { return static_cast<int64_t>(rows.size()); }
};

// What the tail saw in the last compute_gradients call: its input h_tail [B, d_tail] and
// its logit gradient dz [B, G*g] (after dropout). DST's gradient-based regrowth reads it.
struct TailBatch {
  int64_t B = 0;
  int64_t d_tail = 0;
  std::span<const float> h;
  std::span<const float> dz;
  // Row stride of dz; 0: G*g of the tail it is read with (a rank's part of a whole tail's dz
  // has the whole tail's slots).
  int64_t ldz = 0;
};

// Reads a stored tensor `name` of shape `shape` into `out` (checkpoint loading); throws
// haste::Error if it is missing or its shape differs.
using FloatTensorReader = std::function<void(const std::string& name,
                                             std::span<const int64_t> shape, std::span<float> out)>;
using IntTensorReader = std::function<void(const std::string& name, std::span<const int64_t> shape,
                                           std::span<int32_t> out)>;

class Model {
 public:
  // Builds and initialises a model for `train` (input kind and width, label space from it):
  // head = the most frequent labels; tail labels grouped by PIFA vectors + balanced 2-means
  // (seeded); each group's k tail features drawn at random (distinct, sorted; h is learned, so
  // no feature is better than another at the start, and DST moves them later); weights
  // He-initialised, biases at the logit of each label's training frequency. Throws
  // haste::Error on a bad config or an unusable dataset (no rows, no labels, k too large).
  static Model build(const ModelConfig& config, const Dataset& train);
  // Rebuilds a model from its config, shape and stored tensors (every name of parameters()
  // and int_tensors()); validates the tail indices and the label map.
  static Model from_tensors(const ModelConfig& config, const ModelShape& shape,
                            const FloatTensorReader& read_floats, const IntTensorReader& read_ints);

  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const ModelConfig& config() const;
  const ModelShape& shape() const;
  int64_t hidden_dim() const;  // d

  // Forward + BCE-with-logits loss (sum over labels, mean over the batch; padding labels
  // masked) + backward into every Parameter::grad (overwritten). `labels` holds one row per
  // input row, in original label ids (e.g. rows of a dataset's label matrix, see the overload).
  // Dropout (if configured) draws its mask from `dropout_seed`. Returns the loss.
  double compute_gradients(const InputRows& inputs, const CsrMatrix& labels,
                           uint64_t dropout_seed = 0);
  double compute_gradients(const Dataset& data, std::span<const int64_t> rows,
                           uint64_t dropout_seed = 0);

  // Top-k labels (original ids, best first) of each input row over head + tail, with logits
  // computed a chunk of rows at a time; padding labels are never predicted. Ties go to the lower
  // model id. The rankings' scores are the logits.
  Rankings predict(const InputRows& inputs, int k) const;
  Rankings predict(const Dataset& data, int k) const;  // every row of `data`

  // Splits the output layer's labels over `shards` in-process ranks (threads) for the
  // following compute_gradients and predict calls (DESIGN.md 11, src/model/output_shards.hpp):
  // each rank computes its head labels' and tail groups' loss, gradients and top-k on the whole
  // batch, and dh, the loss and the top-k lists are combined over the ranks. The same model as
  // 1 shard (the default) up to floating-point summation order. Parameters stay where they are.
  void set_label_shards(int shards);
  // A multi-process run: this process computes label shard comm.rank() of comm.size() and
  // combines with the other processes' ranks through `comm` (which must outlive its use), the
  // same numbers as comm.size() in-process shards when `comm` sums in rank order (TcpGroup).
  // Every rank must then call compute_gradients and predict together, and predict is no longer
  // safe to call from several threads at once. Rows of other shards' parameters are kept but
  // neither read nor written.
  void set_label_shards(shard::Communicator& comm);
  int label_shards() const;

  // Parameters in the fixed order of the header comment, and the int32 tensors.
  std::vector<Parameter> parameters();
  std::vector<NamedTensor<const float>> float_tensors() const;  // parameters' values, same order
  std::vector<NamedTensor<const int32_t>> int_tensors() const;

  // Rows of encoder.0.weight with a nonzero gradient after the last compute_gradients (the
  // input features of the batch, sorted) when the input is sparse; empty for dense inputs.
  std::span<const int32_t> touched_rows() const;

  // The tail as the kernels see it, and mutable access for DST (indices and weights).
  GroupSharedShape tail_shape() const;
  GroupSharedParams<float>& tail();
  const GroupSharedParams<float>& tail() const;
  TailBatch last_tail_batch() const;
  // Whether compute_gradients keeps the tail's dz [B, G*g] for last_tail_batch (on by default).
  // Only DST's gradient-based regrowth reads it, and keeping it costs a copy of every tail
  // logit's gradient per call, so a trainer turns it on for the steps before such a rewiring.
  void keep_tail_dz(bool keep);
  // Model label id -> original label id (the tensor labels.model_to_original), [L].
  std::span<const int32_t> model_to_original() const;

  ModelSize size() const;

 private:
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace haste
