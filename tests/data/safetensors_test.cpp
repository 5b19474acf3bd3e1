#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <haste/safetensors.hpp>
#include <string>
#include <vector>

#include "test_util/expect_error.hpp"

namespace haste {
namespace {

namespace fs = std::filesystem;
using test_util::expect_error;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("haste-safetensors-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A file with one tensor of each common type and some metadata.
  fs::path write_sample() {
    fs::path file = dir_ / "sample.safetensors";
    SafetensorsWriter writer(file);
    writer.add<float>("weight", {2, 3}, floats_);
    writer.add<int32_t>("indices", {3}, ints_);
    writer.add<int64_t>("step", {1}, longs_);
    writer.add_bf16("weight_bf16", {2, 3}, floats_);
    writer.set_metadata("format", "test");
    writer.commit();
    return file;
  }

  // Raw bytes of a file whose header is `header` followed by `data_bytes` zero bytes.
  fs::path write_raw(const std::string& header, size_t data_bytes, int64_t claimed_size = -1) {
    fs::path file = dir_ / "raw.safetensors";
    std::ofstream out(file, std::ios::binary);
    uint64_t size = claimed_size >= 0 ? static_cast<uint64_t>(claimed_size) : header.size();
    out.write(reinterpret_cast<const char*>(&size), 8);
    out << header << std::string(data_bytes, '\0');
    return file;
  }

  fs::path dir_;
  std::vector<float> floats_{1.0f, -2.5f, 3.25f, 0.0f, 1e-3f, 7.0f};
  std::vector<int32_t> ints_{4, 8, 15};
  std::vector<int64_t> longs_{1LL << 40};
};

TEST_F(SafetensorsTest, RoundTripsEveryType) {
  SafetensorsFile file(write_sample());
  EXPECT_EQ(file.metadata("format"), "test");
  ASSERT_EQ(file.tensors().size(), 4u);

  std::vector<int64_t> shape{2, 3};
  auto weight = file.get<float>("weight", shape);
  EXPECT_EQ(std::vector<float>(weight.begin(), weight.end()), floats_);
  auto indices = file.get<int32_t>("indices", std::vector<int64_t>{3});
  EXPECT_EQ(std::vector<int32_t>(indices.begin(), indices.end()), ints_);
  EXPECT_EQ(file.get<int64_t>("step", std::vector<int64_t>{1})[0], 1LL << 40);

  const TensorView& bf16 = file.get("weight_bf16");
  EXPECT_EQ(bf16.dtype, DType::BF16);
  std::vector<float> widened = bf16.to_float();
  for (size_t i = 0; i < floats_.size(); ++i)
    EXPECT_NEAR(widened[i], floats_[i], 1e-2 * std::abs(floats_[i]) + 1e-6);
}

TEST_F(SafetensorsTest, AlignsEveryTensorForItsType) {
  SafetensorsFile file(write_sample());
  for (const TensorView& view : file.tensors()) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(view.bytes.data()) % dtype_size(view.dtype), 0u)
        << view.name;
  }
}

TEST_F(SafetensorsTest, Bf16RoundsToNearestEven) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(bf16_to_float(0x3F80), 1.0f);
  // 1 + 2^-8 lies halfway between two bf16 values: ties go to the even one (1.0).
  EXPECT_EQ(float_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  EXPECT_EQ(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::nanf("")))));
}

TEST_F(SafetensorsTest, WriterLeavesNoTemporaryFiles) {
  write_sample();
  write_sample();  // overwriting an existing file goes through a temporary too
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    EXPECT_EQ(entry.path().filename(), "sample.safetensors");
    ++files;
  }
  EXPECT_EQ(files, 1);
}

TEST_F(SafetensorsTest, WriterRejectsMismatchedShapes) {
  SafetensorsWriter writer(dir_ / "bad.safetensors");
  expect_error([&] { writer.add<float>("w", {4}, floats_); }, "cannot hold");
  writer.add<float>("w", {6}, floats_);
  expect_error([&] { writer.add<float>("w", {6}, floats_); }, "added twice");
}

TEST_F(SafetensorsTest, ReportsMissingTensorsAndWrongShapes) {
  SafetensorsFile file(write_sample());
  expect_error([&] { file.get("nope"); }, "no tensor \"nope\"");
  expect_error(
      [&] {
        file.get<float>("weight", std::vector<int64_t>{3, 2});
      },
      "has shape [2, 3], expected [3, 2]");
  expect_error(
      [&] {
        file.get<int32_t>("weight", std::vector<int64_t>{2, 3});
      },
      "holds F32, expected I32");
  expect_error([&] { file.metadata("missing"); }, "no metadata \"missing\"");
}

TEST_F(SafetensorsTest, EveryTruncationIsAClearError) {
  fs::path good = write_sample();
  std::ifstream in(good, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  fs::path cut = dir_ / "cut.safetensors";
  for (size_t size = 0; size < bytes.size(); ++size) {
    std::ofstream(cut, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(size));
    expect_error([&] { SafetensorsFile file(cut); }, "cut.safetensors: not a valid safetensors");
  }
}

TEST_F(SafetensorsTest, CorruptHeadersAreClearErrors) {
  const std::string f32 = R"("dtype":"F32","shape":[2],"data_offsets":)";
  expect_error([&] { SafetensorsFile f(write_raw("{", 0)); }, "not valid JSON");
  expect_error([&] { SafetensorsFile f(write_raw("[]", 0)); }, "not a JSON object");
  expect_error([&] { SafetensorsFile f(write_raw("{}", 0, 1LL << 40)); }, "header length");
  expect_error(
      [&] {
        SafetensorsFile f(write_raw(R"({"a":{"dtype":"X9","shape":[1],"data_offsets":[0,1]}})", 1));
      },
      "dtype \"X9\"");
  expect_error([&] { SafetensorsFile f(write_raw(R"({"a":{)" + f32 + "[0,4]}}", 4)); },
               "needs 8 bytes but data_offsets give 4");
  expect_error([&] { SafetensorsFile f(write_raw(R"({"a":{)" + f32 + "[0,8]}}", 4)); },
               "outside the 4 data bytes");
  expect_error(
      [&] {
        SafetensorsFile f(write_raw(R"({"a":{)" + f32 + R"([0,8]},"b":{)" + f32 + "[4,12]}}", 12));
      },
      "overlaps");
  expect_error([&] { SafetensorsFile f(write_raw(R"({"a":{)" + f32 + "[0,8]}}", 12)); },
               "cover 8 of the 12");
  expect_error(
      [&] {
        SafetensorsFile f(
            write_raw(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})", 0));
      },
      "negative");
  expect_error([&] { SafetensorsFile f(write_raw(R"({"__metadata__":{"k":1}})", 0)); },
               "not a string");
  expect_error(
      [&] {
        SafetensorsFile f(write_raw(
            R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,0]}})",
            0));
      },
      "too many");
}

TEST_F(SafetensorsTest, ReadsMisalignedForeignTensors) {
  // A U8 tensor of 1 byte first puts the F32 tensor at an odd offset.
  std::string header = R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                       R"("b":{"dtype":"F32","shape":[1],"data_offsets":[1,5]}})";
  fs::path file = dir_ / "odd.safetensors";
  {
    std::ofstream out(file, std::ios::binary);
    uint64_t size = header.size();
    out.write(reinterpret_cast<const char*>(&size), 8);
    out << header << '\x07';
    float value = 2.5f;
    out.write(reinterpret_cast<const char*>(&value), 4);
  }
  SafetensorsFile f(file);
  EXPECT_EQ(f.get<float>("b", std::vector<int64_t>{1})[0], 2.5f);
  EXPECT_EQ(f.get<uint8_t>("a", std::vector<int64_t>{1})[0], 7);
}

}  // namespace
}  // namespace haste
