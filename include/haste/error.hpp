// Errors: one exception type and a `check` helper, so every failure carries its context.
#pragma once

#include <fmt/format.h>
#include <fmt/std.h>

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace haste {

// Every error the library reports to a user. The message is complete on its own: it names
// the file (and line, for text inputs) and the problem, so the CLI prints it as it is.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

template <typename... Args>
void check(bool condition, fmt::format_string<Args...> format, Args&&... args) {
  if (!condition) fail(format, std::forward<Args>(args)...);
}

// "path:line: problem" in the style of compilers, so editors can jump to the spot.
template <typename... Args>
[[noreturn]] void fail_at(const std::filesystem::path& file, int64_t line,
                          fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format("{}:{}: {}", file.string(), line,
                          fmt::format(format, std::forward<Args>(args)...)));
}

}  // namespace haste
