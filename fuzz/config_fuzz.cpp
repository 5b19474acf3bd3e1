// Run configuration files (TOML) for `haste train`.
#include <haste/config_file.hpp>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  haste::fuzz::expect_clean(
      [&] { haste::parse_run_config(haste::fuzz::as_text(data, size), "fuzz.toml"); });
  return 0;
}
