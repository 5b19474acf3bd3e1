// safetensors files: the 8-byte header length, the JSON header (dtypes, shapes, data_offsets,
// __metadata__) and the tensor table; every tensor is then read as its type and as floats.
#include <haste/safetensors.hpp>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = haste::fuzz::write_file("model.safetensors", haste::fuzz::as_text(data, size));
  haste::fuzz::expect_clean([&] {
    const haste::SafetensorsFile file(path);
    for (const haste::TensorView& tensor : file.tensors()) {
      tensor.to_float();
      if (tensor.dtype == haste::DType::F32) file.get<float>(tensor.name, tensor.shape);
      if (tensor.dtype == haste::DType::I32) file.get<int32_t>(tensor.name, tensor.shape);
    }
  });
  return 0;
}
