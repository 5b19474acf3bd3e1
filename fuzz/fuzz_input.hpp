// Shared by the fuzz targets: the readers take file paths (they memory-map, sniff compression
// and stream), so each input is written to a scratch file and read back through the real path.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <haste/error.hpp>
#include <string>
#include <string_view>

namespace haste::fuzz {

// A per-process scratch directory under $TMPDIR: scripts/fuzz.sh points that to a tmpfs folder
// of its own and removes it afterwards (libFuzzer ends with _Exit, so no atexit cleanup runs).
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    std::filesystem::path path =
        std::filesystem::temp_directory_path() / ("haste-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(path);
    return path;
  }();
  return dir;
}

// Writes `bytes` to scratch_dir()/name and returns the path.
inline std::filesystem::path write_file(const std::string& name, std::string_view bytes) {
  std::filesystem::path path = scratch_dir() / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Runs `parse`; a haste::Error is the expected answer to bad input. Any other exception escapes
// and libFuzzer reports it as a crash: every failure must be a clear haste::Error.
template <typename Parse>
void expect_clean(Parse&& parse) {
  try {
    parse();
  } catch (const Error&) {
  }
}

}  // namespace haste::fuzz
