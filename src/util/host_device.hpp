// HASTE_HOST_DEVICE marks a function that the CUDA kernels call as well as the host code, so
// that both compute the same values from one definition; plain C++ compilers see nothing.
#pragma once

#if defined(__CUDACC__)
#define HASTE_HOST_DEVICE __host__ __device__
#else
#define HASTE_HOST_DEVICE
#endif
