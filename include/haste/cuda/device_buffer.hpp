// DeviceBuffer<T>: an owning cudaMalloc'd array (freed on destruction) with checked copies to
// and from host vectors. Tests, benchmarks and the trainer hold device tensors in these; every
// allocation is counted in the device's memory ledger (device_memory.hpp).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <haste/cuda/cuda_check.hpp>
#include <haste/cuda/device_memory.hpp>
#include <utility>
#include <vector>

namespace haste::cuda {

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t count) : count_(count) {
    if (count_ == 0) return;
    HASTE_CUDA_CHECK(cudaGetDevice(&device_));
    HASTE_CUDA_CHECK(cudaMalloc(&data_, count_ * sizeof(T)));
    note_device_allocation(device_, bytes());
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)),
        count_(std::exchange(other.count_, 0)),
        device_(other.device_) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(count_, other.count_);
    std::swap(device_, other.device_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (!data_) return;
    cudaFree(data_);  // a destructor must not throw; a failed free leaks
    note_device_free(device_, bytes());
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return count_; }
  int64_t bytes() const { return static_cast<int64_t>(count_ * sizeof(T)); }

  void upload(const std::vector<T>& host) {
    check(host.size() == count_, "DeviceBuffer::upload: {} values into a buffer of {}", host.size(),
          count_);
    HASTE_CUDA_CHECK(cudaMemcpy(data_, host.data(), count_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> host(count_);
    HASTE_CUDA_CHECK(cudaMemcpy(host.data(), data_, count_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }
  // Sets every byte to `byte` (0xff makes bf16 and fp32 arrays all NaN: poison before a test).
  void fill_bytes(int byte) { HASTE_CUDA_CHECK(cudaMemset(data_, byte, count_ * sizeof(T))); }

 private:
  T* data_ = nullptr;
  size_t count_ = 0;
  int device_ = 0;  // where data_ lives (the current device when it was allocated)
};

}  // namespace haste::cuda
