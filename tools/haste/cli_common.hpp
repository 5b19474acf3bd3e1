// Helpers shared by several subcommands: recognising input files and printing metrics.
#pragma once

#include <filesystem>
#include <haste/error.hpp>
#include <haste/metrics.hpp>
#include <new>
#include <string_view>

namespace haste::cli {

// Number of fields in a file's header line: 3 for the single-file format ("N F L"), 2 for a
// lone feature or label file ("N F").
int header_fields(const std::filesystem::path& file);

// P, nDCG (and PSP, PSnDCG when present) at 1, 3, 5 in percent, one metric per line.
void print_metric_table(const MetricReport& report);

// Runs `step` (a memory-hungry part of a command) and reports a std::bad_alloc from it as
// "out of memory while <what>": the exception itself does not say which allocation failed, and
// a user needs to know whether the data, the model or its optimizer state did not fit.
template <typename Step>
decltype(auto) naming_memory_use(std::string_view what, Step&& step) {
  try {
    return step();
  } catch (const std::bad_alloc&) {
    fail("out of memory while {}: free memory, or use a smaller model or data set", what);
  }
}

}  // namespace haste::cli
