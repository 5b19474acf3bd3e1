// Naming benchmark result files (DESIGN.md 12): <bench>-<device>-<yyyymmdd>.json, with the date
// in UTC and the device name as the driver gives it, lower-cased, other characters as '-'.
// (bench/kernel_bench.cpp, encoder_bench.cpp and data_load_bench.cpp still carry their own
// copies of these two helpers.)
#pragma once

#include <cctype>
#include <ctime>
#include <string>

namespace haste::util {

// The current UTC date or time in strftime's `format`, e.g. "%Y%m%d".
inline std::string utc_now(const char* format) {
  const std::time_t now = std::time(nullptr);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, format, std::gmtime(&now));
  return buffer;
}

// "NVIDIA H100 80GB HBM3" -> "nvidia-h100-80gb-hbm3".
inline std::string device_slug(std::string name) {
  for (auto& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? std::tolower(c) : '-';
  return name;
}

}  // namespace haste::util
