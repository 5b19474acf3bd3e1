#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <haste/plot.hpp>
#include <string>

#include "test_util/expect_error.hpp"

namespace haste {
namespace {

namespace fs = std::filesystem;

uint32_t read_u32_be(const std::string& bytes, size_t at) {
  uint32_t value = 0;
  for (size_t i = 0; i < 4; ++i) value = value << 8 | static_cast<unsigned char>(bytes[at + i]);
  return value;
}

std::string read_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Decodes a PNG written by write_png (one IDAT, filter 0) back to RGB, checking every chunk.
std::string decode_rgb(const std::string& png, uint32_t& width, uint32_t& height) {
  EXPECT_EQ(png.substr(0, 8), "\x89PNG\r\n\x1a\n");
  std::string idat;
  for (size_t at = 8; at < png.size();) {
    uint32_t length = read_u32_be(png, at);
    std::string type = png.substr(at + 4, 4);
    uLong crc = crc32(0, reinterpret_cast<const Bytef*>(png.data() + at + 4), length + 4);
    EXPECT_EQ(read_u32_be(png, at + 8 + length), crc) << type;
    if (type == "IHDR") width = read_u32_be(png, at + 8), height = read_u32_be(png, at + 12);
    if (type == "IDAT") idat += png.substr(at + 8, length);
    at += 12 + length;
  }
  std::string raw((width * 3 + 1) * height, '\0');
  uLongf size = raw.size();
  EXPECT_EQ(uncompress(reinterpret_cast<Bytef*>(raw.data()), &size,
                       reinterpret_cast<const Bytef*>(idat.data()), idat.size()),
            Z_OK);
  std::string rgb;
  for (uint32_t y = 0; y < height; ++y) rgb += raw.substr(y * (width * 3 + 1) + 1, width * 3);
  return rgb;
}

class PlotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("haste-plot-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(PlotTest, PngRoundTripsPixels) {
  std::vector<uint8_t> rgb(4 * 3 * 3);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 7);
  write_png(dir_ / "tiny.png", 4, 3, rgb);
  uint32_t width = 0, height = 0;
  std::string decoded = decode_rgb(read_file(dir_ / "tiny.png"), width, height);
  EXPECT_EQ(width, 4u);
  EXPECT_EQ(height, 3u);
  EXPECT_EQ(decoded, std::string(rgb.begin(), rgb.end()));
}

TEST_F(PlotTest, LinePlotDrawsEverySeriesColour) {
  LinePlot plot;
  plot.title = "P@k per epoch";
  plot.x = {1, 2, 3};
  plot.series = {{"P@1", {50, 60, 65}, 0xff0000}, {"P@3", {30, NAN, 40}, 0x00ff00}};
  write_line_plot_png(plot, dir_ / "plot.png");
  uint32_t width = 0, height = 0;
  std::string rgb = decode_rgb(read_file(dir_ / "plot.png"), width, height);
  ASSERT_EQ(width, static_cast<uint32_t>(plot.width));
  auto count = [&](uint32_t color) {
    int n = 0;
    for (size_t i = 0; i < rgb.size(); i += 3)
      n += static_cast<uint8_t>(rgb[i]) == (color >> 16) &&
           static_cast<uint8_t>(rgb[i + 1]) == ((color >> 8) & 0xff) &&
           static_cast<uint8_t>(rgb[i + 2]) == (color & 0xff);
    return n;
  };
  EXPECT_GT(count(0xff0000), 500);
  EXPECT_GT(count(0x00ff00), 100);
  EXPECT_GT(count(0x000000), 500);  // axes and text
}

TEST_F(PlotTest, RejectsMismatchedSeries) {
  LinePlot plot;
  plot.x = {1, 2};
  plot.series = {{"P@1", {1}, 0}};
  test_util::expect_error([&] { write_line_plot_png(plot, dir_ / "bad.png"); }, "has 1 values");
}

}  // namespace
}  // namespace haste
