#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <haste/error.hpp>
#include <haste/plot.hpp>
#include <limits>
#include <string_view>

#include "plot/pixel_font.hpp"

namespace haste {
namespace {

constexpr int kTextScale = 2;  // 5x7 glyphs drawn 10x14: readable without anti-aliasing
constexpr int kCharAdvance = (plot::kGlyphWidth + 1) * kTextScale;
constexpr int kTextHeight = plot::kGlyphHeight * kTextScale;
constexpr uint32_t kBlack = 0x000000, kGrid = 0xdddddd;

class Canvas {
 public:
  Canvas(int width, int height)
      : width_(width), height_(height), rgb_(static_cast<size_t>(width) * height * 3, 0xff) {}

  void set(int x, int y, uint32_t color) {
    if (x < 0 || y < 0 || x >= width_ || y >= height_) return;
    uint8_t* pixel = &rgb_[(static_cast<size_t>(y) * width_ + x) * 3];
    pixel[0] = static_cast<uint8_t>(color >> 16);
    pixel[1] = static_cast<uint8_t>(color >> 8);
    pixel[2] = static_cast<uint8_t>(color);
  }
  void fill(int x0, int y0, int x1, int y1, uint32_t color) {
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) set(x, y, color);
  }
  // A line `thickness` pixels wide (Bresenham with a square pen).
  void line(int x0, int y0, int x1, int y1, uint32_t color, int thickness = 1) {
    int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
    int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, error = dx + dy;
    int lo = -(thickness - 1) / 2, hi = thickness / 2;
    while (true) {
      fill(x0 + lo, y0 + lo, x0 + hi, y0 + hi, color);
      if (x0 == x1 && y0 == y1) return;
      int e2 = 2 * error;
      if (e2 >= dy) error += dy, x0 += sx;
      if (e2 <= dx) error += dx, y0 += sy;
    }
  }
  // Text with its top-left corner at (x, y).
  void text(int x, int y, std::string_view s, uint32_t color) {
    for (char c : s) {
      if (const plot::Glyph* glyph = plot::find_glyph(c)) {
        for (int row = 0; row < plot::kGlyphHeight; ++row)
          for (int col = 0; col < plot::kGlyphWidth; ++col)
            if (glyph->rows[row] & (0x10 >> col))
              fill(x + col * kTextScale, y + row * kTextScale, x + (col + 1) * kTextScale - 1,
                   y + (row + 1) * kTextScale - 1, color);
      }
      x += kCharAdvance;
    }
  }
  static int text_width(std::string_view s) { return static_cast<int>(s.size()) * kCharAdvance; }

  const std::vector<uint8_t>& rgb() const { return rgb_; }

 private:
  int width_, height_;
  std::vector<uint8_t> rgb_;
};

// A "nice" tick step (1, 2 or 5 times a power of ten) giving about `target` ticks over `span`.
double tick_step(double span, int target) {
  double raw = span / target;
  double power = std::pow(10.0, std::floor(std::log10(raw)));
  for (double factor : {1.0, 2.0, 5.0})
    if (factor * power >= raw) return factor * power;
  return 10 * power;
}

std::string tick_label(double value, double step) {
  return step >= 1 ? fmt::format("{:.0f}", value)
                   : fmt::format("{:.{}f}", value, static_cast<int>(std::ceil(-std::log10(step))));
}

}  // namespace

void write_line_plot_png(const LinePlot& plot, const std::filesystem::path& file) {
  check(!plot.x.empty(), "{}: nothing to plot", file.string());
  double x_min = std::numeric_limits<double>::infinity(), x_max = -x_min;
  double y_min = x_min, y_max = -x_min;
  for (double x : plot.x) x_min = std::min(x_min, x), x_max = std::max(x_max, x);
  for (const PlotSeries& s : plot.series) {
    check(s.values.size() == plot.x.size(), "{}: series {} has {} values for {} x positions",
          file.string(), s.name, s.values.size(), plot.x.size());
    for (double v : s.values)
      if (std::isfinite(v)) y_min = std::min(y_min, v), y_max = std::max(y_max, v);
  }
  if (!std::isfinite(y_min)) y_min = 0, y_max = 1;
  if (x_max - x_min < 1e-12) x_min -= 1, x_max += 1;
  double y_step = tick_step(std::max(y_max - y_min, 1e-9), 5);
  y_min = std::floor(y_min / y_step) * y_step;
  y_max = std::max(std::ceil(y_max / y_step) * y_step, y_min + y_step);
  double x_step = std::max(1.0, tick_step(x_max - x_min, 8));

  // Plot area: room on the left for y ticks, on the right for the legend.
  int legend_width = 0;
  for (const PlotSeries& s : plot.series)
    legend_width = std::max(legend_width, Canvas::text_width(s.name));
  const int left = 80, top = 20 + 2 * kTextHeight, bottom = plot.height - 30 - 2 * kTextHeight;
  const int right = plot.width - 40 - legend_width - 30;
  check(right - left > 50 && bottom - top > 50, "{}: a {}x{} image is too small for this plot",
        file.string(), plot.width, plot.height);
  auto px = [&](double x) {
    return left + static_cast<int>(std::lround((x - x_min) / (x_max - x_min) * (right - left)));
  };
  auto py = [&](double y) {
    return bottom - static_cast<int>(std::lround((y - y_min) / (y_max - y_min) * (bottom - top)));
  };

  Canvas canvas(plot.width, plot.height);
  for (double y = y_min; y <= y_max + y_step / 2; y += y_step) {
    canvas.line(left, py(y), right, py(y), kGrid);
    std::string label = tick_label(y, y_step);
    canvas.text(left - 8 - Canvas::text_width(label), py(y) - kTextHeight / 2, label, kBlack);
  }
  for (double x = std::ceil(x_min / x_step) * x_step; x <= x_max + 1e-9; x += x_step) {
    canvas.line(px(x), top, px(x), bottom, kGrid);
    std::string label = tick_label(x, x_step);
    canvas.text(px(x) - Canvas::text_width(label) / 2, bottom + 8, label, kBlack);
  }
  canvas.line(left, top, left, bottom, kBlack);
  canvas.line(left, bottom, right, bottom, kBlack);
  canvas.text((plot.width - Canvas::text_width(plot.title)) / 2, 12, plot.title, kBlack);
  canvas.text((left + right - Canvas::text_width(plot.x_label)) / 2, bottom + 16 + kTextHeight,
              plot.x_label, kBlack);
  canvas.text(8, top - kTextHeight - 6, plot.y_label, kBlack);

  for (size_t i = 0; i < plot.series.size(); ++i) {
    const PlotSeries& s = plot.series[i];
    bool have_previous = false;
    int previous_x = 0, previous_y = 0;
    for (size_t j = 0; j < plot.x.size(); ++j) {
      if (!std::isfinite(s.values[j])) {
        have_previous = false;
        continue;
      }
      int x = px(plot.x[j]), y = py(s.values[j]);
      if (have_previous) canvas.line(previous_x, previous_y, x, y, s.color, 2);
      canvas.fill(x - 3, y - 3, x + 3, y + 3, s.color);
      previous_x = x, previous_y = y, have_previous = true;
    }
    int legend_y = top + static_cast<int>(i) * (kTextHeight + 10);
    canvas.fill(right + 20, legend_y + 2, right + 40, legend_y + kTextHeight - 3, s.color);
    canvas.text(right + 50, legend_y, s.name, kBlack);
  }
  write_png(file, plot.width, plot.height, canvas.rgb());
}

}  // namespace haste
