#include "data/xc_format.hpp"

#include <fmt/format.h>

#include <iterator>

namespace haste {

void append_xc_header(std::string& out, int64_t rows, int64_t features, int64_t labels) {
  fmt::format_to(std::back_inserter(out), "{} {} {}\n", rows, features, labels);
}

void append_xc_row(std::string& out, std::span<const int32_t> labels,
                   std::span<const int32_t> feature_indices,
                   std::span<const float> feature_values) {
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i > 0) out += ',';
    out += fmt::format_int(labels[i]).c_str();
  }
  for (size_t i = 0; i < feature_indices.size(); ++i) {
    out += ' ';
    out += fmt::format_int(feature_indices[i]).c_str();
    out += ':';
    fmt::format_to(std::back_inserter(out), "{}", feature_values[i]);
  }
  out += '\n';
}

}  // namespace haste
