// Checked copies between host vectors and raw device pointers, for GPU tests that read and
// write buffers a library object owns (DeviceBuffer has its own upload/download). Empty copies
// touch nothing (a layer without a head has null head buffers).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <haste/cuda/cuda_check.hpp>
#include <vector>

namespace haste::test_util {

template <typename T>
std::vector<T> download(const T* device, size_t n) {
  std::vector<T> host(n);
  if (n == 0) return host;
  HASTE_CUDA_CHECK(cudaMemcpy(host.data(), device, n * sizeof(T), cudaMemcpyDeviceToHost));
  return host;
}

template <typename T>
void upload(T* device, const std::vector<T>& host) {
  if (host.empty()) return;
  HASTE_CUDA_CHECK(
      cudaMemcpy(device, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
}

}  // namespace haste::test_util
