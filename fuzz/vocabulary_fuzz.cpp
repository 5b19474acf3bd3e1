// Featurizer vocabulary files (JSON: tokens, document frequencies, idf, label names), read by
// `haste data featurize --vocabulary` and from checkpoints by `haste predict --raw`.
#include <haste/featurize.hpp>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  haste::fuzz::expect_clean([&] {
    const haste::Featurizer featurizer = haste::Featurizer::from_vocabulary_json(
        haste::fuzz::as_text(data, size), "fuzz-vocabulary.json");
    std::vector<int32_t> indices;
    std::vector<float> values;
    featurizer.transform_text("the quick brown fox jumps over the lazy dog", indices, values);
  });
  return 0;
}
