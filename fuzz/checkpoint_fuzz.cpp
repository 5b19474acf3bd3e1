// HASTE checkpoints: a safetensors file whose metadata (model config and shape, training config)
// is JSON and whose tensors must match the shapes that metadata implies; the featurizer's
// vocabulary rides along as a U8 tensor.
#include <haste/checkpoint.hpp>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = haste::fuzz::write_file("model.safetensors", haste::fuzz::as_text(data, size));
  haste::fuzz::expect_clean([&] {
    const haste::Checkpoint checkpoint(path);
    haste::fuzz::expect_clean([&] { checkpoint.featurizer(); });
    haste::fuzz::expect_clean([&] {
      if (checkpoint.has_training_state()) checkpoint.train_config();
    });
    checkpoint.load_model();
  });
  return 0;
}
