// Text of one Extreme Classification Repository row, for writers that stream rows to a file
// instead of holding a Dataset (the synthetic generator, the featurizer) and for write_xc.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace haste {

// "N F L\n".
void append_xc_header(std::string& out, int64_t rows, int64_t features, int64_t labels);

// "l1,l2 f:v f:v\n". Values are written in the shortest form that reads back to the same
// float, so a written file reloads bit-exactly.
void append_xc_row(std::string& out, std::span<const int32_t> labels,
                   std::span<const int32_t> feature_indices, std::span<const float> feature_values);

}  // namespace haste
