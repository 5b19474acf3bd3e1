#include <haste/progress.hpp>

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace haste {

using Clock = std::chrono::steady_clock;

Progress::Progress(std::string label, bool enabled)
    : label_(std::move(label)),
      enabled_(enabled && ::isatty(STDERR_FILENO)),
      start_(Clock::now()),
      last_draw_(start_) {}

Progress::~Progress() { finish(); }

void Progress::update(double fraction, int64_t count, const char* unit) {
  if (!enabled_) return;
  auto now = Clock::now();
  if (now - start_ < std::chrono::milliseconds(500)) return;
  if (drawn_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  draw(fraction, count, unit);
}

void Progress::draw(double fraction, int64_t count, const char* unit) {
  constexpr int kWidth = 30;
  fraction = std::clamp(fraction, 0.0, 1.0);
  int filled = static_cast<int>(fraction * kWidth);
  std::string bar(static_cast<size_t>(filled), '=');
  if (filled < kWidth) bar += '>';
  bar.resize(kWidth, ' ');
  double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
  std::string counted = count >= 0 ? fmt::format(" {} {}", human_count(count), unit) : "";
  fmt::print(stderr, "\r{} [{}] {:3.0f}%{} {:.1f}s\033[K", label_, bar, fraction * 100, counted,
             seconds);
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::finish() {
  if (!drawn_) return;
  fmt::print(stderr, "\r\033[K");
  std::fflush(stderr);
  drawn_ = false;
  enabled_ = false;
}

std::string human_count(int64_t count) {
  if (count >= 10'000'000'000) return fmt::format("{:.1f}G", count / 1e9);
  if (count >= 10'000'000) return fmt::format("{:.1f}M", count / 1e6);
  if (count >= 10'000) return fmt::format("{:.1f}K", count / 1e3);
  return fmt::format("{}", count);
}

}  // namespace haste
