// NumPy .npy files of dense features (versions 1-3, f4/f8, C or Fortran order).
#include <haste/dataset.hpp>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto file = haste::fuzz::write_file("features.npy", haste::fuzz::as_text(data, size));
  haste::fuzz::expect_clean([&] { haste::read_npy(file); });
  return 0;
}
