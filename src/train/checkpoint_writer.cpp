// Writing checkpoints, whole or one file per label shard (see include/haste/checkpoint.hpp).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <haste/checkpoint.hpp>
#include <haste/error.hpp>
#include <haste/shard/label_shards.hpp>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "data/text_io.hpp"
#include "train/checkpoint_format.hpp"

namespace haste {
namespace fs = std::filesystem;
using namespace checkpoint_format;

namespace {

using Json = nlohmann::json;

// What one file holds: every tensor whole (shard == null), or shard `rank`'s rows of the
// tensors split by labels and, in rank 0's file only, the other tensors whole.
struct FileSlice {
  const shard::LabelShard* shard = nullptr;
  int rank = 0;
  int64_t group_size = 1;

  // The rows [begin, end) of tensor `name` (with `rows` rows) this file holds, or none.
  std::optional<std::pair<int64_t, int64_t>> rows_of(std::string_view name, int64_t rows) const {
    if (shard == nullptr) return std::pair{int64_t{0}, rows};
    if (auto split = shard::label_rows(*shard, name, group_size)) return split;
    if (rank == 0) return std::pair{int64_t{0}, rows};
    return std::nullopt;
  }
};

template <typename T>
void add_rows(SafetensorsWriter& writer, const FileSlice& slice, const std::string& name,
              std::vector<int64_t> shape, std::span<const T> values) {
  const auto rows = slice.rows_of(name, shape.empty() ? 1 : shape[0]);
  if (!rows) return;
  if (shape.empty()) {
    writer.add<T>(name, shape, values);
    return;
  }
  int64_t row_size = 1;
  for (size_t i = 1; i < shape.size(); ++i) row_size *= shape[i];
  const auto [begin, end] = *rows;
  shape[0] = end - begin;
  writer.add<T>(name, shape,
                values.subspan(static_cast<size_t>(begin * row_size),
                               static_cast<size_t>((end - begin) * row_size)));
}

void write_checkpoint_file(const fs::path& file, const Model& model, Trainer* trainer,
                           const Featurizer* featurizer, const FileSlice& slice) {
  SafetensorsWriter writer(file);
  writer.set_metadata("format", kFormat);
  writer.set_metadata("format_version", kFormatVersion);
  writer.set_metadata("model_config", model.config().to_json().dump());
  writer.set_metadata("model_shape", model.shape().to_json().dump());
  if (slice.shard != nullptr) {
    const shard::LabelShard& s = *slice.shard;
    writer.set_metadata(kLabelShardKey, Json{{"rank", slice.rank},
                                             {"head_begin", s.head_begin},
                                             {"head_end", s.head_end},
                                             {"group_begin", s.group_begin},
                                             {"group_end", s.group_end}}
                                            .dump());
  }
  for (const auto& tensor : model.float_tensors())
    add_rows<float>(writer, slice, tensor.name, tensor.shape, tensor.data);
  for (const auto& tensor : model.int_tensors())
    add_rows<int32_t>(writer, slice, tensor.name, tensor.shape, tensor.data);

  if (trainer != nullptr) {
    writer.set_metadata("train_config", trainer->config().to_json().dump());
    writer.set_metadata("trainer_state", trainer->state().to_json().dump());
    writer.set_metadata("optimizer_steps", std::to_string(trainer->optimizer().steps_taken()));
    for (const auto& tensor : trainer->optimizer().state_tensors()) {
      add_rows<float>(writer, slice, kOptimizerPrefix + tensor.name, tensor.shape,
                      std::span<const float>(tensor.data));
    }
  }
  std::string vocabulary;
  if (featurizer != nullptr && slice.rows_of(kVocabularyTensor, 1)) {
    vocabulary = featurizer->to_vocabulary_json();
    writer.add<uint8_t>(
        kVocabularyTensor, {static_cast<int64_t>(vocabulary.size())},
        std::span(reinterpret_cast<const uint8_t*>(vocabulary.data()), vocabulary.size()));
  }
  writer.commit();
}

bool is_shard_file(const std::string& name) {
  return name.starts_with("model-step") && name.ends_with(".safetensors") &&
         name.find("-shard") != std::string::npos;
}

// Removes the shard files of `directory` not named in `keep`.
void remove_shard_files(const fs::path& directory, const std::vector<std::string>& keep) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(directory, ec)) {
    const std::string name = entry.path().filename().string();
    if (is_shard_file(name) && std::find(keep.begin(), keep.end(), name) == keep.end()) {
      fs::remove(entry.path(), ec);
    }
  }
}

std::string shard_file_name(int64_t step, int rank, int shards) {
  return fmt::format("model-step{}-shard{}-of{}.safetensors", step, rank, shards);
}

int64_t steps_done(const Trainer* trainer) {
  return trainer != nullptr ? trainer->state().steps_done : 0;
}

void write_shard_file(const fs::path& directory, const Model& model, int shards, int rank,
                      Trainer* trainer, const Featurizer* featurizer) {
  const std::vector<shard::LabelShard> label_shards =
      shard::split_labels(model.shape().head_labels, model.shape().groups, shards);
  write_checkpoint_file(directory / shard_file_name(steps_done(trainer), rank, shards), model,
                        trainer, featurizer, {&label_shards[rank], rank, model.shape().group_size});
}

// The index naming the `shards` files of step `step`, once they are all written, then the
// removal of every other checkpoint file.
void commit_sharded_checkpoint(const fs::path& directory, int shards, int64_t step) {
  std::vector<std::string> files;
  for (int r = 0; r < shards; ++r) files.push_back(shard_file_name(step, r, shards));
  const Json index{{"format", kIndexFormat},
                   {"format_version", kFormatVersion},
                   {"shards", shards},
                   {"step", step},
                   {"files", files}};
  AtomicOutput out(directory / kShardIndexFileName);
  out.write(index.dump(2) + "\n");
  out.commit();
  remove_shard_files(directory, files);
  fs::remove(directory / kCheckpointFileName);
}

void save_sharded_checkpoint(const fs::path& directory, const Model& model, int shards,
                             Trainer* trainer, const Featurizer* featurizer) {
  for (int r = 0; r < shards; ++r) {
    write_shard_file(directory, model, shards, r, trainer, featurizer);
  }
  commit_sharded_checkpoint(directory, shards, steps_done(trainer));
}

}  // namespace

void save_checkpoint(const fs::path& file, const Model& model, Trainer* trainer,
                     const Featurizer* featurizer) {
  write_checkpoint_file(file, model, trainer, featurizer, {});
}

void save_run_checkpoint(const fs::path& directory, const Model& model, int shards,
                         Trainer* trainer, const Featurizer* featurizer) {
  check(shards >= 1, "checkpoint: {} shards; need at least 1", shards);
  if (shards > 1) {
    save_sharded_checkpoint(directory, model, shards, trainer, featurizer);
    return;
  }
  save_checkpoint(directory / kCheckpointFileName, model, trainer, featurizer);
  fs::remove(directory / kShardIndexFileName);
  remove_shard_files(directory, {});
}

void save_run_checkpoint(const fs::path& directory, const Model& model, shard::Communicator& comm,
                         Trainer* trainer, const Featurizer* featurizer) {
  const int shards = comm.size(), rank = comm.rank();
  if (shards == 1) {
    save_run_checkpoint(directory, model, 1, trainer, featurizer);
    return;
  }
  // Every rank learns whether every shard file was written before rank 0 names them in the
  // index: a rank that could not write leaves the previous checkpoint in force everywhere.
  std::string error;
  try {
    write_shard_file(directory, model, shards, rank, trainer, featurizer);
  } catch (const std::exception& e) {
    error = e.what();
  }
  float failures[1] = {error.empty() ? 0.0f : 1.0f};
  comm.all_reduce(std::span<float>(failures));
  if (!error.empty()) throw Error(error);
  const int64_t step = steps_done(trainer);
  check(failures[0] == 0,
        "checkpoint: another rank could not write its shard of step {} into {} (its output says "
        "why); the previous checkpoint there stays in force",
        step, directory.string());
  if (rank != 0) return;
  // A network file system may show another host's new file a little later.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (int r = 1; r < shards; ++r) {
    const fs::path file = directory / shard_file_name(step, r, shards);
    while (!fs::exists(file)) {
      check(std::chrono::steady_clock::now() < deadline,
            "checkpoint: rank {} wrote {}, but rank 0 does not see it: --out must be a "
            "directory on a file system every rank sees",
            r, file.string());
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  commit_sharded_checkpoint(directory, shards, step);
}

bool has_checkpoint(const fs::path& directory) {
  return fs::exists(directory / kShardIndexFileName) || fs::exists(directory / kCheckpointFileName);
}

}  // namespace haste
