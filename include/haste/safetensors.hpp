// safetensors files: named tensors behind a JSON header, the format PyTorch and Hugging Face use
// for weights, so a HASTE checkpoint opens in Python with `safetensors.numpy.load_file`.
//
// Layout: an 8-byte little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value", ...}}
// then the raw little-endian tensor bytes; offsets are relative to the end of the header. As in
// the reference implementation, the tensors tile the data area exactly: no gaps, no overlaps.
//
// The writer orders tensors by element size (8-byte types first) and pads the header to a
// multiple of 8 with spaces, so every tensor is aligned for its type when the file is mapped.
// It writes to a temporary file that is fsynced and renamed into place, so a crash never leaves
// a half-written file under the final name.
//
// The reader memory-maps the file read-only: opening a multi-gigabyte model costs one header
// parse, and tensor pages are read when first touched. It validates the whole header (length
// against the file size, JSON, dtypes, shapes against byte sizes, offsets) and reports any
// problem as a haste::Error naming the file, so a corrupt or truncated file never crashes it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace haste {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

std::string_view dtype_name(DType dtype);  // "F32", "BF16", ... as the format spells them
size_t dtype_size(DType dtype);            // bytes per element

// Element type of a C++ type, for the typed accessors below.
template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<double>() {
  return DType::F64;
}
template <>
constexpr DType dtype_of<float>() {
  return DType::F32;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::I64;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::I32;
}
template <>
constexpr DType dtype_of<uint8_t>() {
  return DType::U8;
}

// bfloat16: the upper half of an IEEE float, rounded to nearest even (NaN stays NaN).
uint16_t float_to_bf16(float value);
float bf16_to_float(uint16_t value);

// One tensor of an open file. `bytes` points into the file mapping (or, for a tensor that is
// not aligned for its type in a foreign file, into an aligned copy owned by the file).
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::span<const std::byte> bytes;

  int64_t numel() const;
  // The elements as T; throws when the dtype is not T's.
  template <typename T>
  std::span<const T> values() const;
  // The elements converted to float (F64, F32, F16, BF16 and the integer types).
  std::vector<float> to_float() const;
};

// A read-only, memory-mapped safetensors file.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& file);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;

  const std::filesystem::path& path() const;
  const std::map<std::string, std::string>& metadata() const;
  // The metadata value of `key`; throws naming the file when it is missing.
  const std::string& metadata(std::string_view key) const;
  // Tensors in file order.
  const std::vector<TensorView>& tensors() const;
  const TensorView* find(std::string_view name) const;  // nullptr when absent
  // The tensor `name`; throws naming the file when it is missing.
  const TensorView& get(std::string_view name) const;
  // The tensor `name` as T with the given shape; throws naming the file, the tensor and what
  // differs when the dtype or shape does not match.
  template <typename T>
  std::span<const T> get(std::string_view name, std::span<const int64_t> shape) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Collects tensors and metadata and writes them in one go. The writer copies nothing until
// commit(): every span handed to add() must stay valid until then.
class SafetensorsWriter {
 public:
  explicit SafetensorsWriter(std::filesystem::path file);
  ~SafetensorsWriter();

  void add(std::string name, DType dtype, std::vector<int64_t> shape,
           std::span<const std::byte> bytes);
  template <typename T>
  void add(std::string name, std::vector<int64_t> shape, std::span<const T> values) {
    add(std::move(name), dtype_of<T>(), std::move(shape), std::as_bytes(values));
  }
  // Stores float values as BF16 (the writer keeps the converted copy).
  void add_bf16(std::string name, std::vector<int64_t> shape, std::span<const float> values);
  void set_metadata(std::string key, std::string value);

  // Writes the file atomically (temporary file, fsync, rename, fsync of the directory).
  void commit();

 private:
  struct Pending {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::span<const std::byte> bytes;
  };
  std::filesystem::path file_;
  std::vector<Pending> tensors_;
  std::vector<std::unique_ptr<std::vector<uint16_t>>> converted_;  // add_bf16's copies
  std::map<std::string, std::string> metadata_;
};

}  // namespace haste
