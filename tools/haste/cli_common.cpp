#include "cli_common.hpp"

#include <fmt/format.h>

#include <sstream>
#include <string>

#include "data/text_io.hpp"

namespace haste::cli {

int header_fields(const std::filesystem::path& file) {
  LineReader reader(file);
  std::string_view header;
  if (!reader.next(header)) return 0;
  std::istringstream fields{std::string(header)};
  int count = 0;
  for (std::string field; fields >> field;) ++count;
  return count;
}

void print_metric_table(const MetricReport& report) {
  fmt::print("{:<8}{:>8}{:>8}{:>8}\n", "metric", "@1", "@3", "@5");
  auto row = [](const char* name, const std::array<double, kMaxK>& metric) {
    fmt::print("{:<8}{:>8.2f}{:>8.2f}{:>8.2f}\n", name, 100 * metric[0], 100 * metric[2],
               100 * metric[4]);
  };
  row("P", report.precision);
  row("nDCG", report.ndcg);
  if (report.has_propensity_scored) {
    row("PSP", report.psp);
    row("PSnDCG", report.psndcg);
  }
  fmt::print("(percent; {} rows)\n", report.rows);
}

}  // namespace haste::cli
