// Single-file XC format ("N F L" header, then "l1,l2 f:v f:v" rows), compressed or not.
#include <haste/dataset.hpp>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto file = haste::fuzz::write_file("data.txt", haste::fuzz::as_text(data, size));
  haste::fuzz::expect_clean([&] {
    haste::ReadOptions options;
    options.use_cache = false;
    options.show_progress = false;
    haste::read_xc(file, options);
  });
  return 0;
}
