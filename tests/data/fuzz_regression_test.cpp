// Inputs that the fuzzers (fuzz/, scripts/fuzz.sh) found crashing a parser or tripping a
// sanitizer, kept verbatim under tests/data/fuzz_regressions/<target>/: each must now fail with
// a clear haste::Error, or be a miss of the binary cache (which sends the reader back to the
// text), or, for a valid file, load.
#include <gtest/gtest.h>

#include <filesystem>
#include <haste/checkpoint.hpp>
#include <haste/config_file.hpp>
#include <haste/featurize.hpp>
#include <haste/safetensors.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "data/binary_cache.hpp"
#include "data/raw_text.hpp"
#include "data_test_files.hpp"
#include "test_util/cache_payload.hpp"
#include "test_util/expect_error.hpp"

namespace haste {
namespace {

namespace fs = std::filesystem;
using test_util::expect_error;

fs::path regression(const std::string& name) {
  return fs::path(HASTE_SOURCE_DIR) / "tests/data/fuzz_regressions" / name;
}

class FuzzRegressionTest : public test_util::DataFilesTest {
 protected:
  std::string input(const std::string& name) { return read_raw(regression(name)); }
};

// toml++ 3.3 reached __builtin_unreachable() on a non-ASCII character (UBSan: "execution reached
// an unreachable program point"); config files are now checked to be ASCII first.
TEST_F(FuzzRegressionTest, ConfigWithNonAsciiByte) {
  expect_error([&] { parse_run_config(input("config/non_ascii_unreachable.toml"), "run.toml"); },
               "run.toml:1: non-ASCII byte 0xDE at column 27: config files must be ASCII");
}

// json.value("format", "") threw nlohmann's type_error (not a haste::Error) for a non-string.
TEST_F(FuzzRegressionTest, VocabularyWithNonStringFormat) {
  expect_error(
      [&] {
        Featurizer::from_vocabulary_json(input("vocabulary/format_not_a_string.json"), "v.json");
      },
      "v.json: not a featurizer vocabulary (no \"format\": ");
}

// A number beyond double's range made nlohmann throw out_of_range, which was not caught.
TEST_F(FuzzRegressionTest, VocabularyWithNumberOverflow) {
  expect_error(
      [&] { Featurizer::from_vocabulary_json(input("vocabulary/number_overflow.json"), "v.json"); },
      "v.json: not valid JSON: ");
}

// nlohmann converts a float to int64 with a plain cast: a 5.6e77 among the "df" counts was
// undefined behaviour (UBSan: "outside the range of representable values of type 'long'").
TEST_F(FuzzRegressionTest, VocabularyWithFloatForAnInteger) {
  expect_error(
      [&] {
        Featurizer::from_vocabulary_json(input("vocabulary/float_for_an_integer.json"), "v.json");
      },
      "v.json: featurizer vocabulary field \"df\" has the wrong type");
}

// The same in the featurizer's JSON-lines reader.
TEST_F(FuzzRegressionTest, RawTextWithNumberOverflow) {
  const fs::path file =
      write_raw("text.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\", \"x\": 1e999}\n");
  RawTextReader reader(file);
  RawTextRow row;
  ASSERT_TRUE(reader.next(row));
  expect_error([&] { reader.next(row); }, "text.jsonl:2: not valid JSON: ");
}

// A valid file whose empty F64 tensor (shape [0, 4]) sits at an address that is not a multiple
// of 8: its aligned copy had no storage, and memcpy got a null pointer (UBSan). Nothing to
// reject here: the file must load.
TEST_F(FuzzRegressionTest, SafetensorsEmptyTensorAtUnalignedOffset) {
  const SafetensorsFile file(regression("safetensors/empty_tensor_unaligned.safetensors"));
  EXPECT_EQ(file.tensors().size(), 11u);
  EXPECT_EQ(file.get("k").numel(), 0);
  EXPECT_TRUE(file.get("k").to_float().empty());
  EXPECT_EQ(file.get("E").values<int32_t>().size(), 1u);  // misaligned too: read from a copy
}

// A cache entry with a valid checksum but offsets that are not ascending (0, 50331649, 3) was
// handed to callers that index with it; the reader now checks the structure and misses.
TEST_F(FuzzRegressionTest, CacheWithOffsetsNotAscending) {
  const fs::path source = write_raw("source.txt", "2 4\n0:1\n1:1\n");
  ReadOptions options;
  options.cache_dir = dir_ / "cache";
  const test_util::CachePayloadWriter writer(source, "fuzz", options);
  writer.write(input("binary_cache/indptr_not_ascending.bin"));
  EXPECT_FALSE(load_cached(source, "fuzz", options).has_value());
}

// The rest were found while fixing the above, by reading the neighbouring code.

// The float-to-integer cast of the vocabulary also sat in the settings reader behind config
// files and checkpoint metadata.
TEST_F(FuzzRegressionTest, SettingsWithFloatForAnInteger) {
  expect_error([] { parse_run_config("[train]\nepochs = 1e300\n", "run.toml"); },
               "'epochs' has the wrong type (number 1e+300)");
  expect_error([] { ModelConfig::from_json({{"hidden", {16, 1e300}}}); }, "wrong type");
}

// groups * group_size overflowed int64 (undefined behaviour) while checking a stored shape.
TEST_F(FuzzRegressionTest, ModelShapeWithOverflowingTail) {
  nlohmann::json shape = {
      {"input_dim", 8},  {"num_labels", 8}, {"head_labels", 0},    {"groups", int64_t{1} << 62},
      {"group_size", 8}, {"fan_in", 2},     {"sparse_input", true}};
  expect_error([&] { ModelShape::from_json(shape); }, "more than a model can hold");
}

// A checkpoint whose metadata declares a model far larger than its tensors: the model was
// allocated (and zeroed) from the metadata before any tensor was read.
TEST_F(FuzzRegressionTest, CheckpointShapeLargerThanItsTensors) {
  const SafetensorsFile original(fs::path(HASTE_SOURCE_DIR) /
                                 "fuzz/corpus/checkpoint/train_state.safetensors");
  const fs::path inflated = dir_ / "inflated.safetensors";
  SafetensorsWriter writer(inflated);
  for (const auto& [key, value] : original.metadata()) writer.set_metadata(key, value);
  nlohmann::json shape = nlohmann::json::parse(original.metadata("model_shape"));
  shape["input_dim"] = 1'000'000'000;
  writer.set_metadata("model_shape", shape.dump());
  for (const TensorView& tensor : original.tensors()) {
    writer.add(tensor.name, tensor.dtype, tensor.shape, tensor.bytes);
  }
  writer.commit();
  expect_error([&] { Checkpoint(inflated).load_model(); },
               "declare an encoder layer of 1000000000 x 3 elements, but the file holds only 155");
}

}  // namespace
}  // namespace haste
