#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <deque>
#include <haste/error.hpp>
#include <haste/safetensors.hpp>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>

#include "data/text_io.hpp"

namespace haste {
namespace fs = std::filesystem;

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian bytes; a big-endian host would need swapping");

namespace {

using Json = nlohmann::json;

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  size_t size;
};
constexpr std::array<DTypeInfo, 10> kDTypes = {{{DType::F64, "F64", 8},
                                                {DType::F32, "F32", 4},
                                                {DType::F16, "F16", 2},
                                                {DType::BF16, "BF16", 2},
                                                {DType::I64, "I64", 8},
                                                {DType::I32, "I32", 4},
                                                {DType::I16, "I16", 2},
                                                {DType::I8, "I8", 1},
                                                {DType::U8, "U8", 1},
                                                {DType::BOOL, "BOOL", 1}}};

const DTypeInfo& info(DType dtype) {
  for (const DTypeInfo& entry : kDTypes)
    if (entry.dtype == dtype) return entry;
  fail("unknown dtype {}", static_cast<int>(dtype));
}

// The reference implementation refuses headers above 100 MB; so do we, before allocating.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr char kMetadataKey[] = "__metadata__";

float f16_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  int exponent = (h >> 10) & 0x1F;
  uint32_t mantissa = h & 0x3FF;
  float magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -24);  // zero and subnormals
  } else if (exponent == 31) {
    magnitude =
        mantissa ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  } else {
    magnitude = std::ldexp(static_cast<float>(mantissa | 0x400), exponent - 25);
  }
  return std::bit_cast<float>(std::bit_cast<uint32_t>(magnitude) | sign);
}

// Product of the dims, or -1 when it overflows what a file could hold.
int64_t element_count(std::span<const int64_t> shape) {
  int64_t count = 1;
  for (int64_t dim : shape) {
    if (dim != 0 && count > std::numeric_limits<int64_t>::max() / dim) return -1;
    count *= dim;
  }
  return count;
}

std::string shape_text(std::span<const int64_t> shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// A read-only mapping of a whole file, unmapped on destruction.
class Mapping {
 public:
  explicit Mapping(const fs::path& file) {
    int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    check(fd >= 0, "{}: cannot open: {}", file.string(), std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      fail("{}: not a regular file", file.string());
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
      void* address = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      int error = errno;
      ::close(fd);
      check(address != MAP_FAILED, "{}: cannot map into memory: {}", file.string(),
            std::strerror(error));
      data_ = static_cast<const std::byte*>(address);
    } else {
      ::close(fd);
    }
  }
  ~Mapping() {
    if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  std::span<const std::byte> bytes() const { return {data_, size_}; }

 private:
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace

std::string_view dtype_name(DType dtype) { return info(dtype).name; }
size_t dtype_size(DType dtype) { return info(dtype).size; }

uint16_t float_to_bf16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  if (std::isnan(value)) return static_cast<uint16_t>((bits >> 16) | 0x40);  // stay a NaN
  uint32_t rounding = 0x7FFF + ((bits >> 16) & 1);  // to nearest, ties to even
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float bf16_to_float(uint16_t value) {
  return std::bit_cast<float>(static_cast<uint32_t>(value) << 16);
}

int64_t TensorView::numel() const { return element_count(shape); }

template <typename T>
std::span<const T> TensorView::values() const {
  check(dtype == dtype_of<T>(), "tensor {} holds {}, not {}", name, dtype_name(dtype),
        dtype_name(dtype_of<T>()));
  return {reinterpret_cast<const T*>(bytes.data()), bytes.size() / sizeof(T)};
}
template std::span<const double> TensorView::values() const;
template std::span<const float> TensorView::values() const;
template std::span<const int64_t> TensorView::values() const;
template std::span<const int32_t> TensorView::values() const;
template std::span<const uint8_t> TensorView::values() const;

std::vector<float> TensorView::to_float() const {
  const size_t n = static_cast<size_t>(numel());
  std::vector<float> out(n);
  auto convert = [&](auto tag, auto to) {
    using T = decltype(tag);
    const T* in = reinterpret_cast<const T*>(bytes.data());
    for (size_t i = 0; i < n; ++i) out[i] = to(in[i]);
  };
  auto cast = [](auto v) { return static_cast<float>(v); };
  switch (dtype) {
    case DType::F64:
      convert(double{}, cast);
      break;
    case DType::F32:
      convert(float{}, cast);
      break;
    case DType::F16:
      convert(uint16_t{}, f16_to_float);
      break;
    case DType::BF16:
      convert(uint16_t{}, bf16_to_float);
      break;
    case DType::I64:
      convert(int64_t{}, cast);
      break;
    case DType::I32:
      convert(int32_t{}, cast);
      break;
    case DType::I16:
      convert(int16_t{}, cast);
      break;
    case DType::I8:
      convert(int8_t{}, cast);
      break;
    case DType::U8:
    case DType::BOOL:
      convert(uint8_t{}, cast);
      break;
  }
  return out;
}

struct SafetensorsFile::Impl {
  fs::path path;
  std::unique_ptr<Mapping> mapping;
  std::map<std::string, std::string> metadata;
  std::vector<TensorView> tensors;
  std::deque<std::vector<std::max_align_t>> aligned_copies;  // for misaligned foreign tensors

  template <typename... Args>
  [[noreturn]] void corrupt(fmt::format_string<Args...> format, Args&&... args) const {
    fail("{}: not a valid safetensors file: {}", path.string(),
         fmt::format(format, std::forward<Args>(args)...));
  }

  DType parse_dtype(const std::string& name, const std::string& tensor) const {
    for (const DTypeInfo& entry : kDTypes)
      if (entry.name == name) return entry.dtype;
    corrupt(
        "tensor \"{}\" has dtype \"{}\", which HASTE does not read (it reads F64, F32, F16, "
        "BF16, I64, I32, I16, I8, U8, BOOL)",
        tensor, name);
  }

  void parse_metadata(const Json& value) {
    if (!value.is_object()) corrupt("\"{}\" must be an object of strings", kMetadataKey);
    for (const auto& [key, text] : value.items()) {
      if (!text.is_string()) corrupt("metadata \"{}\" is not a string", key);
      metadata.emplace(key, text.get<std::string>());
    }
  }

  // One tensor entry; offsets are checked against the data area later, once all are known.
  TensorView parse_tensor(const std::string& name, const Json& entry, uint64_t data_size,
                          std::array<uint64_t, 2>& offsets) const {
    if (!entry.is_object()) corrupt("entry \"{}\" is not an object", name);
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!entry.contains(field)) corrupt("tensor \"{}\" has no \"{}\"", name, field);
    if (entry.size() != 3)
      corrupt("tensor \"{}\" has fields besides dtype, shape and data_offsets", name);
    if (!entry["dtype"].is_string()) corrupt("tensor \"{}\": dtype is not a string", name);
    TensorView view;
    view.name = name;
    view.dtype = parse_dtype(entry["dtype"].get<std::string>(), name);
    const Json& shape = entry["shape"];
    if (!shape.is_array()) corrupt("tensor \"{}\": shape is not an array", name);
    for (const Json& dim : shape) {
      if (!dim.is_number_unsigned())
        corrupt("tensor \"{}\": shape has a non-integer or negative dimension", name);
      uint64_t value = dim.get<uint64_t>();
      if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        corrupt("tensor \"{}\": dimension {} is too large", name, value);
      view.shape.push_back(static_cast<int64_t>(value));
    }
    const Json& range = entry["data_offsets"];
    if (!range.is_array() || range.size() != 2 || !range[0].is_number_unsigned() ||
        !range[1].is_number_unsigned())
      corrupt("tensor \"{}\": data_offsets must be two non-negative integers", name);
    offsets = {range[0].get<uint64_t>(), range[1].get<uint64_t>()};
    if (offsets[0] > offsets[1] || offsets[1] > data_size)
      corrupt(
          "tensor \"{}\": data_offsets [{}, {}] lie outside the {} data bytes (truncated file?)",
          name, offsets[0], offsets[1], data_size);
    int64_t count = view.numel();
    uint64_t size = offsets[1] - offsets[0];
    if (count < 0 || static_cast<uint64_t>(count) > size ||
        static_cast<uint64_t>(count) * dtype_size(view.dtype) != size)
      corrupt("tensor \"{}\": shape {} of {} needs {} bytes but data_offsets give {}", name,
              shape_text(view.shape), dtype_name(view.dtype),
              count < 0 ? std::string("too many") : std::to_string(count * dtype_size(view.dtype)),
              size);
    return view;
  }

  void parse(std::span<const std::byte> file) {
    if (file.size() < 8) corrupt("{} bytes, less than the 8-byte header length", file.size());
    uint64_t header_size = 0;
    std::memcpy(&header_size, file.data(), 8);
    if (header_size > kMaxHeaderBytes || header_size > file.size() - 8)
      corrupt("the header length {} exceeds the file ({} bytes): truncated or not safetensors",
              header_size, file.size());
    const char* header = reinterpret_cast<const char*>(file.data() + 8);
    Json json = Json::parse(header, header + header_size, nullptr, false);
    if (json.is_discarded()) corrupt("the header is not valid JSON");
    if (!json.is_object()) corrupt("the header is not a JSON object");

    const std::span<const std::byte> data = file.subspan(8 + header_size);
    std::vector<std::pair<std::array<uint64_t, 2>, size_t>> ranges;
    for (const auto& [name, entry] : json.items()) {
      if (name == kMetadataKey) {
        parse_metadata(entry);
        continue;
      }
      std::array<uint64_t, 2> offsets{};
      tensors.push_back(parse_tensor(name, entry, data.size(), offsets));
      ranges.emplace_back(offsets, tensors.size() - 1);
    }
    // The tensors must tile the data area: sorted by offset, each starts where the last ended.
    std::sort(ranges.begin(), ranges.end());
    uint64_t expected = 0;
    for (const auto& [offsets, index] : ranges) {
      if (offsets[0] != expected)
        corrupt("tensor \"{}\" starts at byte {} of the data, expected {} ({})",
                tensors[index].name, offsets[0], expected,
                offsets[0] < expected ? "it overlaps another tensor" : "a gap before it");
      expected = offsets[1];
    }
    if (expected != data.size())
      corrupt("the tensors cover {} of the {} data bytes", expected, data.size());

    std::vector<TensorView> ordered;
    for (const auto& [offsets, index] : ranges) {
      TensorView view = std::move(tensors[index]);
      view.bytes = data.subspan(offsets[0], offsets[1] - offsets[0]);
      align(view);
      ordered.push_back(std::move(view));
    }
    tensors = std::move(ordered);
  }

  // Files from other writers may place a tensor at an address its type cannot be read from;
  // such a tensor is read from an aligned copy instead. An empty one has nothing to copy (and
  // its copy would have no storage for memcpy).
  void align(TensorView& view) {
    auto address = reinterpret_cast<uintptr_t>(view.bytes.data());
    if (view.bytes.empty() || address % dtype_size(view.dtype) == 0) return;
    auto& copy = aligned_copies.emplace_back((view.bytes.size() + sizeof(std::max_align_t) - 1) /
                                             sizeof(std::max_align_t));
    std::memcpy(copy.data(), view.bytes.data(), view.bytes.size());
    view.bytes = {reinterpret_cast<const std::byte*>(copy.data()), view.bytes.size()};
  }
};

SafetensorsFile::SafetensorsFile(const fs::path& file) : impl_(std::make_unique<Impl>()) {
  impl_->path = file;
  std::error_code ec;
  check(fs::exists(file, ec), "{}: no such file", file.string());
  impl_->mapping = std::make_unique<Mapping>(file);
  impl_->parse(impl_->mapping->bytes());
}

SafetensorsFile::~SafetensorsFile() = default;
SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;

const fs::path& SafetensorsFile::path() const { return impl_->path; }
const std::map<std::string, std::string>& SafetensorsFile::metadata() const {
  return impl_->metadata;
}

const std::string& SafetensorsFile::metadata(std::string_view key) const {
  auto found = impl_->metadata.find(std::string(key));
  check(found != impl_->metadata.end(), "{}: no metadata \"{}\" in the file", path().string(), key);
  return found->second;
}

const std::vector<TensorView>& SafetensorsFile::tensors() const { return impl_->tensors; }

const TensorView* SafetensorsFile::find(std::string_view name) const {
  for (const TensorView& view : impl_->tensors)
    if (view.name == name) return &view;
  return nullptr;
}

const TensorView& SafetensorsFile::get(std::string_view name) const {
  const TensorView* view = find(name);
  check(view != nullptr, "{}: no tensor \"{}\" in the file", path().string(), name);
  return *view;
}

template <typename T>
std::span<const T> SafetensorsFile::get(std::string_view name,
                                        std::span<const int64_t> shape) const {
  const TensorView& view = get(name);
  check(view.dtype == dtype_of<T>(), "{}: tensor \"{}\" holds {}, expected {}", path().string(),
        name, dtype_name(view.dtype), dtype_name(dtype_of<T>()));
  check(std::ranges::equal(view.shape, shape), "{}: tensor \"{}\" has shape {}, expected {}",
        path().string(), name, shape_text(view.shape), shape_text(shape));
  return view.values<T>();
}
template std::span<const double> SafetensorsFile::get(std::string_view,
                                                      std::span<const int64_t>) const;
template std::span<const float> SafetensorsFile::get(std::string_view,
                                                     std::span<const int64_t>) const;
template std::span<const int64_t> SafetensorsFile::get(std::string_view,
                                                       std::span<const int64_t>) const;
template std::span<const int32_t> SafetensorsFile::get(std::string_view,
                                                       std::span<const int64_t>) const;
template std::span<const uint8_t> SafetensorsFile::get(std::string_view,
                                                       std::span<const int64_t>) const;

SafetensorsWriter::SafetensorsWriter(fs::path file) : file_(std::move(file)) {}
SafetensorsWriter::~SafetensorsWriter() = default;

void SafetensorsWriter::add(std::string name, DType dtype, std::vector<int64_t> shape,
                            std::span<const std::byte> bytes) {
  check(name != kMetadataKey, "{}: \"{}\" is reserved and cannot name a tensor", file_.string(),
        name);
  for (const Pending& pending : tensors_)
    check(pending.name != name, "{}: tensor \"{}\" added twice", file_.string(), name);
  int64_t count = element_count(shape);
  check(count >= 0 && static_cast<uint64_t>(count) * dtype_size(dtype) == bytes.size(),
        "{}: tensor \"{}\" of shape {} and dtype {} cannot hold {} bytes", file_.string(), name,
        shape_text(shape), dtype_name(dtype), bytes.size());
  tensors_.push_back({std::move(name), dtype, std::move(shape), bytes});
}

void SafetensorsWriter::add_bf16(std::string name, std::vector<int64_t> shape,
                                 std::span<const float> values) {
  auto& copy = converted_.emplace_back(std::make_unique<std::vector<uint16_t>>(values.size()));
  std::transform(values.begin(), values.end(), copy->begin(), float_to_bf16);
  add(std::move(name), DType::BF16, std::move(shape),
      std::as_bytes(std::span<const uint16_t>(*copy)));
}

void SafetensorsWriter::set_metadata(std::string key, std::string value) {
  metadata_[std::move(key)] = std::move(value);
}

void SafetensorsWriter::commit() {
  // Widest types first: with the header padded to 8 bytes every tensor is then aligned.
  std::vector<size_t> order(tensors_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return dtype_size(tensors_[a].dtype) > dtype_size(tensors_[b].dtype);
  });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata_.empty()) header[kMetadataKey] = metadata_;
  uint64_t offset = 0;
  for (size_t index : order) {
    const Pending& t = tensors_[index];
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  uint64_t header_size = text.size();

  AtomicOutput output(file_);
  output.write(std::string_view(reinterpret_cast<const char*>(&header_size), 8));
  output.write(text);
  for (size_t index : order) {
    const auto& bytes = tensors_[index].bytes;
    output.write(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  }
  output.commit();
}

}  // namespace haste
