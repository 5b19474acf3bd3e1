// What the host side of the GPU optimizer (optimizer_gpu.cpp) hands to its kernels
// (optimizer_gpu.cu). Plain C++ so that both g++ and nvcc read it (fmt's compile-time format
// checks do not compile under nvcc, so every check lives in the .cpp); the launchers return the
// launch's cudaError_t.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <haste/cuda/optimizer_update.hpp>

namespace haste::cuda {

// Counter-based randomness for stochastic rounding: splitmix64's finaliser. A step's key mixes
// (seed, step, parameter); each element then mixes its index into the key.
__host__ __device__ inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Elements per thread and step of the dense update (one 16-byte bf16 load). Every pointer of a
// dense update must be 16-byte aligned (cudaMalloc'd buffers are).
constexpr int kPack = 8;

template <typename T, typename Grad>
cudaError_t launch_dense_update(const UpdateScalars& s, T* value, const Grad* grad,
                                OptimizerStateDevice state, int64_t n, uint64_t key,
                                unsigned blocks, cudaStream_t stream);

template <typename T, typename Grad>
cudaError_t launch_row_update(const UpdateScalars& s, T* value, const Grad* grad,
                              OptimizerStateDevice state, int64_t width, const int32_t* rows,
                              const int32_t* row_count, int64_t max_rows, uint64_t key,
                              unsigned blocks, cudaStream_t stream);

// values[0 .. n) *= factor.
cudaError_t launch_scale(float* values, int64_t n, float factor, unsigned blocks,
                         cudaStream_t stream);

// One block per group, g * k values of T in shared memory (at most 48 KB).
template <typename T>
cudaError_t launch_remap_slots(const GroupSharedShape& shape, const int32_t* source, T* values,
                               cudaStream_t stream);

constexpr int kOptimizerThreads = 256;

}  // namespace haste::cuda
