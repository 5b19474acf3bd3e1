// Dense features from NumPy .npy files (format versions 1-3): a magic string, a Python-dict
// header {'descr': '<f4', 'fortran_order': False, 'shape': (N, D)}, then the raw array.
// float32 and float64, C or Fortran order; compressed .npy files read as they come.
#include "data/npy_reader.hpp"

#include <charconv>
#include <cmath>
#include <cstring>
#include <haste/dataset.hpp>
#include <haste/error.hpp>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/text_io.hpp"

namespace haste {
namespace fs = std::filesystem;

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;

// Reads exactly `size` bytes unless the data ends first; returns how many were read.
size_t read_fully(CompressedInput& input, char* buffer, size_t size) {
  size_t done = 0;
  while (done < size) {
    size_t n = input.read(buffer + done, size - done);
    if (n == 0) break;
    done += n;
  }
  return done;
}

struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
};

// The value after `'key':` in the header dict, with leading spaces skipped.
std::string_view dict_value(std::string_view dict, std::string_view key, const fs::path& file) {
  std::string quoted_key = fmt::format("'{}'", key);
  size_t at = dict.find(quoted_key);
  if (at == std::string_view::npos) {
    fail("{}: the .npy header has no '{}' entry: {}", file.string(), key, dict);
  }
  size_t colon = dict.find(':', at + quoted_key.size());
  check(colon != std::string_view::npos, "{}: malformed .npy header: {}", file.string(), dict);
  std::string_view value = dict.substr(colon + 1);
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  return value;
}

NpyHeader parse_header_dict(std::string_view dict, const fs::path& file) {
  NpyHeader header;
  std::string_view descr = dict_value(dict, "descr", file);
  size_t close = descr.find('\'', 1);
  check(!descr.empty() && descr.front() == '\'' && close != std::string_view::npos,
        "{}: malformed 'descr' in the .npy header: {}", file.string(), dict);
  header.descr = std::string(descr.substr(1, close - 1));

  std::string_view order = dict_value(dict, "fortran_order", file);
  if (order.starts_with("True")) {
    header.fortran_order = true;
  } else {
    check(order.starts_with("False"), "{}: malformed 'fortran_order' in the .npy header: {}",
          file.string(), dict);
  }

  std::string_view shape = dict_value(dict, "shape", file);
  size_t end = shape.find(')');
  check(!shape.empty() && shape.front() == '(' && end != std::string_view::npos,
        "{}: malformed 'shape' in the .npy header: {}", file.string(), dict);
  std::string_view dims = shape.substr(1, end - 1);
  while (!dims.empty()) {
    while (!dims.empty() && (dims.front() == ' ' || dims.front() == ',')) dims.remove_prefix(1);
    if (dims.empty()) break;
    int64_t dim = 0;
    auto [ptr, ec] = std::from_chars(dims.data(), dims.data() + dims.size(), dim);
    check(ec == std::errc{} && dim >= 0, "{}: malformed 'shape' in the .npy header: {}",
          file.string(), dict);
    header.shape.push_back(dim);
    dims.remove_prefix(static_cast<size_t>(ptr - dims.data()));
  }
  return header;
}

NpyHeader read_header(CompressedInput& input, const fs::path& file) {
  char preamble[kMagicSize + 2];
  size_t got = read_fully(input, preamble, sizeof preamble);
  check(got == sizeof preamble && std::memcmp(preamble, kMagic, kMagicSize) == 0,
        "{}: not a .npy file (it does not start with \"\\x93NUMPY\")", file.string());
  int major = static_cast<unsigned char>(preamble[kMagicSize]);
  check(major >= 1 && major <= 3, "{}: .npy format version {} is not supported (1-3 are)",
        file.string(), major);
  // Version 1 stores the header length in 2 bytes, later versions in 4 (little-endian).
  unsigned char length_bytes[4] = {0, 0, 0, 0};
  size_t length_size = major == 1 ? 2 : 4;
  check(read_fully(input, reinterpret_cast<char*>(length_bytes), length_size) == length_size,
        "{}: the .npy header is truncated", file.string());
  size_t length = length_bytes[0] | (length_bytes[1] << 8) | (size_t{length_bytes[2]} << 16) |
                  (size_t{length_bytes[3]} << 24);
  check(length < (1u << 24), "{}: implausible .npy header length {}", file.string(), length);
  std::string dict(length, '\0');
  check(read_fully(input, dict.data(), length) == length, "{}: the .npy header is truncated",
        file.string());
  return parse_header_dict(dict, file);
}

// Element `k` of the file's data, in row-major position of a rows x cols matrix.
size_t row_major_index(size_t k, const NpyHeader& header, int64_t rows, int64_t cols) {
  if (!header.fortran_order) return k;
  size_t row = k % static_cast<size_t>(rows);
  size_t col = k / static_cast<size_t>(rows);
  return row * static_cast<size_t>(cols) + col;
}

template <typename Source>
void convert_chunk(const char* bytes, size_t count, size_t first_element, const NpyHeader& header,
                   DenseMatrix& out, const fs::path& file) {
  for (size_t i = 0; i < count; ++i) {
    Source value;
    std::memcpy(&value, bytes + i * sizeof(Source), sizeof(Source));
    float stored = static_cast<float>(value);
    size_t at = row_major_index(first_element + i, header, out.rows, out.cols);
    if (!std::isfinite(stored)) {
      fail("{}: row {}, column {}: the value {} is not a finite float32", file.string(),
           at / static_cast<size_t>(out.cols), at % static_cast<size_t>(out.cols),
           static_cast<double>(value));
    }
    out.data[at] = stored;
  }
}

}  // namespace

bool is_npy_file(const fs::path& file) {
  CompressedInput input(file);
  char magic[kMagicSize];
  return read_fully(input, magic, kMagicSize) == kMagicSize &&
         std::memcmp(magic, kMagic, kMagicSize) == 0;
}

DenseMatrix read_npy(const fs::path& file) {
  CompressedInput input(file);
  NpyHeader header = read_header(input, file);
  // '<' is little-endian, '=' native, '|' byte order irrelevant; this reader runs on
  // little-endian machines only (x86-64, ARM64).
  bool little = !header.descr.empty() && header.descr[0] != '>';
  std::string type = header.descr.size() > 1 ? header.descr.substr(1) : header.descr;
  check(little && (type == "f4" || type == "f8"),
        "{}: the .npy dtype '{}' is not supported: expected float32 ('<f4') or float64 ('<f8'); "
        "convert with arr.astype(numpy.float32)",
        file.string(), header.descr);
  size_t item_size = type == "f4" ? 4 : 8;
  if (header.shape.size() != 2) {
    std::string shape;
    for (int64_t dim : header.shape) shape += fmt::format("{},", dim);
    fail("{}: expected a 2-D array (points x features), got shape ({})", file.string(), shape);
  }
  DenseMatrix out;
  out.rows = header.shape[0];
  out.cols = header.shape[1];
  constexpr int64_t kMaxElements = std::numeric_limits<int64_t>::max() / 8;
  check(out.cols == 0 || out.rows <= kMaxElements / out.cols, "{}: shape ({}, {}) is too large",
        file.string(), out.rows, out.cols);
  size_t elements = static_cast<size_t>(out.rows * out.cols);
  size_t data_bytes = elements * item_size;
  // A plain file's size tells at once whether the data is all there, before allocating.
  if (input.compression() == Compression::none) {
    int64_t available = input.file_size() - input.file_bytes_consumed();
    check(available >= static_cast<int64_t>(data_bytes),
          "{}: the array data ends after {} of {} bytes (truncated?)", file.string(),
          std::max<int64_t>(available, 0), data_bytes);
  }
  try {
    out.data.resize(elements);
  } catch (const std::bad_alloc&) {
    fail("{}: shape ({}, {}) does not fit in memory", file.string(), out.rows, out.cols);
  } catch (const std::length_error&) {
    fail("{}: shape ({}, {}) does not fit in memory", file.string(), out.rows, out.cols);
  }

  // Read through a bounce buffer, converting (and transposing Fortran order) chunk by chunk.
  constexpr size_t kChunkElements = 1 << 16;
  std::vector<char> chunk(kChunkElements * item_size);
  size_t done = 0;
  while (done < elements) {
    size_t count = std::min(kChunkElements, elements - done);
    size_t got = read_fully(input, chunk.data(), count * item_size);
    check(got == count * item_size, "{}: the array data ends after {} of {} bytes (truncated?)",
          file.string(), done * item_size + got, data_bytes);
    if (item_size == 4) {
      convert_chunk<float>(chunk.data(), count, done, header, out, file);
    } else {
      convert_chunk<double>(chunk.data(), count, done, header, out, file);
    }
    done += count;
  }
  char extra = 0;
  check(read_fully(input, &extra, 1) == 0,
        "{}: there are bytes after the array data: the header's shape ({}, {}) does not match "
        "the data",
        file.string(), out.rows, out.cols);
  return out;
}

}  // namespace haste
