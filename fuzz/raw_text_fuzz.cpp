// Raw text in JSON lines ({"text": ..., "labels": [...]}), the featurizer's input: the reader
// alone, then a fit and a transform of the same file.
#include <haste/featurize.hpp>

#include "data/raw_text.hpp"
#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto file = haste::fuzz::write_file("text.jsonl", haste::fuzz::as_text(data, size));
  haste::fuzz::expect_clean([&] {
    haste::RawTextReader reader(file);
    haste::RawTextRow row;
    while (reader.next(row)) {
    }
  });
  haste::fuzz::expect_clean([&] {
    haste::FeaturizeOptions options;
    options.min_df = 1;
    options.show_progress = false;
    const haste::Featurizer featurizer = haste::Featurizer::fit(file, options);
    featurizer.transform(file, 0, false);
  });
  return 0;
}
