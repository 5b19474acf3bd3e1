#include <zlib.h>

#include <array>
#include <haste/error.hpp>
#include <haste/plot.hpp>
#include <string>

#include "data/text_io.hpp"

namespace haste {
namespace {

void append_u32_be(std::string& out, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(value >> shift));
}

// A PNG chunk: length, type, data, CRC-32 over type and data.
void append_chunk(std::string& out, const char (&type)[5], const std::string& data) {
  append_u32_be(out, static_cast<uint32_t>(data.size()));
  size_t crc_start = out.size();
  out.append(type, 4);
  out += data;
  uLong crc = crc32(0L, reinterpret_cast<const Bytef*>(out.data() + crc_start),
                    static_cast<uInt>(out.size() - crc_start));
  append_u32_be(out, static_cast<uint32_t>(crc));
}

}  // namespace

void write_png(const std::filesystem::path& file, int width, int height,
               std::span<const uint8_t> rgb) {
  check(width > 0 && height > 0 && rgb.size() == static_cast<size_t>(width) * height * 3,
        "{}: a {}x{} RGB image needs {} bytes, got {}", file.string(), width, height,
        static_cast<size_t>(width) * height * 3, rgb.size());
  // Each row is prefixed by its filter type (0: none); plots compress well without filters.
  const size_t stride = static_cast<size_t>(width) * 3;
  std::string raw;
  raw.reserve((stride + 1) * height);
  for (int y = 0; y < height; ++y) {
    raw.push_back('\0');
    raw.append(reinterpret_cast<const char*>(rgb.data() + y * stride), stride);
  }
  uLongf packed_size = compressBound(static_cast<uLong>(raw.size()));
  std::string packed(packed_size, '\0');
  check(compress2(reinterpret_cast<Bytef*>(packed.data()), &packed_size,
                  reinterpret_cast<const Bytef*>(raw.data()), static_cast<uLong>(raw.size()),
                  Z_BEST_COMPRESSION) == Z_OK,
        "{}: cannot compress the image", file.string());
  packed.resize(packed_size);

  std::string header;
  append_u32_be(header, static_cast<uint32_t>(width));
  append_u32_be(header, static_cast<uint32_t>(height));
  header +=
      std::string{8, 2, 0, 0, 0};  // 8-bit depth, truecolour, deflate, no filter, no interlace

  std::string png = "\x89PNG\r\n\x1a\n";
  append_chunk(png, "IHDR", header);
  append_chunk(png, "IDAT", packed);
  append_chunk(png, "IEND", "");
  AtomicOutput output(file);
  output.write(png);
  output.commit();
}

}  // namespace haste
