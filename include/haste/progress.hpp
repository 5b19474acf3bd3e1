// A one-line progress bar on stderr for long reads and loops.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace haste {

// Draws "label [=====>    ] 42% 1.2M rows 3.4s" on stderr, redrawn at most 10 times a second.
// Nothing is drawn for work that ends within half a second, or when stderr is not a terminal
// (logs stay clean); then only `finish` prints a summary line, if asked to.
class Progress {
 public:
  Progress(std::string label, bool enabled = true);
  ~Progress();

  // `fraction` in [0, 1]; `count` is shown beside it with `unit` (e.g. rows).
  void update(double fraction, int64_t count = -1, const char* unit = "");
  void finish();

 private:
  void draw(double fraction, int64_t count, const char* unit);

  std::string label_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

// "1.23M", "45.6K", "789": counts in a width that fits a progress line.
std::string human_count(int64_t count);

}  // namespace haste
