// Moving the per-slot values of the tail ([G*g, k] label-major: weights, optimizer state) after
// DST re-sorted a group's features: new slot j of group G takes old slot source[G, j], or 0
// when source[G, j] is -1 (a regrown feature).
#pragma once

#include <algorithm>
#include <cstdint>
#include <haste/group_shared.hpp>
#include <span>
#include <vector>

namespace haste::model {

inline void remap_slots(std::span<float> values, const GroupSharedShape& shape,
                        std::span<const int32_t> source) {
  const int64_t g = shape.g, k = shape.k;
#pragma omp parallel for schedule(static)
  for (int64_t group = 0; group < shape.G; ++group) {
    const int32_t* from = source.data() + group * k;
    std::vector<float> old(k);
    for (int64_t l = group * g; l < (group + 1) * g; ++l) {
      float* row = values.data() + l * k;
      std::copy_n(row, k, old.begin());
      for (int64_t j = 0; j < k; ++j) row[j] = from[j] >= 0 ? old[from[j]] : 0.0f;
    }
  }
}

}  // namespace haste::model
