// NumPy .npy files of dense features (read_npy is declared in haste/dataset.hpp).
#pragma once

#include <filesystem>

namespace haste {

// True when the file (after decompression, if compressed) starts with the .npy magic bytes.
bool is_npy_file(const std::filesystem::path& file);

}  // namespace haste
