// Line plots saved as PNG files (training curves: P@1/3/5 per epoch).
//
// Drawn and encoded here, with zlib for the PNG's deflate stream and a built-in 5x7 pixel font,
// instead of with cairo: the binary must run on machines without cairo's shared libraries
// (the lent GPU machine has none), and a curve plot needs only lines, dots and short labels.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

namespace haste {

struct PlotSeries {
  std::string name;            // legend entry
  std::vector<double> values;  // one per x; NaN leaves a point out
  uint32_t color = 0x1f77b4;   // 0xRRGGBB
};

struct LinePlot {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<double> x;
  std::vector<PlotSeries> series;
  int width = 720;
  int height = 440;
};

// Renders `plot` and writes it as a PNG file (atomically). Throws haste::Error when a series'
// length differs from x's or the file cannot be written.
void write_line_plot_png(const LinePlot& plot, const std::filesystem::path& file);

// An 8-bit RGB image (rows top to bottom, 3 bytes per pixel) as a PNG file, written atomically.
void write_png(const std::filesystem::path& file, int width, int height,
               std::span<const uint8_t> rgb);

}  // namespace haste
