// Split XC format: a features file ("N F" then "f:v f:v" rows, or a .npy of dense features) and
// a labels file ("N L" then "l:v l" rows), plus the same features text read as a lone matrix
// (prediction files). The input holds both files, separated by the line "====".
#include <haste/dataset.hpp>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input = haste::fuzz::as_text(data, size);
  const size_t split = input.find("====\n");
  const std::string_view features = input.substr(0, split);
  const std::string_view labels =
      split == std::string_view::npos ? std::string_view() : input.substr(split + 5);
  const auto features_file = haste::fuzz::write_file("features.txt", features);
  const auto labels_file = haste::fuzz::write_file("labels.txt", labels);
  haste::ReadOptions options;
  options.use_cache = false;
  options.show_progress = false;
  haste::fuzz::expect_clean([&] { haste::read_xc_split(features_file, labels_file, options); });
  haste::fuzz::expect_clean([&] { haste::read_xc_matrix(features_file, options); });
  return 0;
}
