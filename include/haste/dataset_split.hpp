// Train/test splits for datasets that come without one: a seeded, deterministic random holdout,
// the same on every machine, so every learner compared on a dataset sees the same rows.
#pragma once

#include <cstdint>
#include <haste/dataset.hpp>
#include <vector>

namespace haste {

struct DatasetSplit {
  Dataset train;
  Dataset test;
};

// Rows of `data` for the test part: round(test_fraction * N) rows chosen uniformly at random by
// `seed`, returned in increasing order. test_fraction must lie in (0, 1).
std::vector<int64_t> holdout_rows(int64_t rows, double test_fraction, uint64_t seed);

// The rows of `data` listed (in that order) in `rows`, features and labels alike.
Dataset select_rows(const Dataset& data, const std::vector<int64_t>& rows);

// Splits `data` into train and test; both keep the original row order and the full feature
// and label spaces (F and L unchanged, so ids mean the same in both).
DatasetSplit split_dataset(const Dataset& data, double test_fraction, uint64_t seed);

}  // namespace haste
