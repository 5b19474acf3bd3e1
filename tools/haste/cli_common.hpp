// Helpers shared by several subcommands: recognising input files and printing metrics.
#pragma once

#include <filesystem>
#include <haste/metrics.hpp>

namespace haste::cli {

// Number of fields in a file's header line: 3 for the single-file format ("N F L"), 2 for a
// lone feature or label file ("N F").
int header_fields(const std::filesystem::path& file);

// P, nDCG (and PSP, PSnDCG when present) at 1, 3, 5 in percent, one metric per line.
void print_metric_table(const MetricReport& report);

}  // namespace haste::cli
