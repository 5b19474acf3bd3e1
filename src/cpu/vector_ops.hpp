// Short dense vector loops for the CPU kernels. `omp simd` lets the compiler vectorise the
// reduction in `dot` without -ffast-math (it may then reorder the sum, which is fine here), so
// kernels written with these read like the math and still run at SIMD width.
#pragma once

#include <cstdint>

// Compiles a function three times, for AVX-512, for AVX2 + FMA and for baseline x86-64, and
// picks one at load time by the CPU (GCC's function multiversioning). For the few loops that
// do enough arithmetic per byte for the vector width to matter (the loss sweep, the optimizer
// step); the build still runs on any x86-64. The last bits of a result may then differ between
// CPUs (FMA contraction, wider partial sums), not between runs on one CPU.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define HASTE_VECTOR_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define HASTE_VECTOR_CLONES
#endif

namespace haste::cpu {

template <typename T>
inline T dot(const T* __restrict x, const T* __restrict y, int64_t n) {
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += x[i] * y[i];
  return sum;
}

// out[r] = dot(x[r], y) for four vectors x[0..4) against one y: y is loaded once for four
// products, which halves the loads per multiply-add of four separate dots.
template <typename T>
inline void dot4(const T* __restrict x0, const T* __restrict x1, const T* __restrict x2,
                 const T* __restrict x3, const T* __restrict y, int64_t n, T out[4]) {
  T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
  for (int64_t i = 0; i < n; ++i) {
    s0 += x0[i] * y[i];
    s1 += x1[i] * y[i];
    s2 += x2[i] * y[i];
    s3 += x3[i] * y[i];
  }
  out[0] = s0;
  out[1] = s1;
  out[2] = s2;
  out[3] = s3;
}

// y += a * x
template <typename T>
inline void axpy(T a, const T* __restrict x, T* __restrict y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// y += a[0] * x0 + a[1] * x1 + a[2] * x2 + a[3] * x3: four axpys with one pass over y.
template <typename T>
inline void axpy4(const T a[4], const T* __restrict x0, const T* __restrict x1,
                  const T* __restrict x2, const T* __restrict x3, T* __restrict y, int64_t n) {
  const T a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += a0 * x0[i] + a1 * x1[i] + a2 * x2[i] + a3 * x3[i];
}

// out[i] = row[columns[i]]: one row of h restricted to a group's features.
template <typename T>
inline void gather(const T* __restrict row, const int32_t* __restrict columns, T* __restrict out,
                   int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = row[columns[i]];
}

// row[columns[i]] += values[i]; columns must be distinct (a group's features are).
template <typename T>
inline void scatter_add(const T* __restrict values, const int32_t* __restrict columns,
                        T* __restrict row, int64_t n) {
  for (int64_t i = 0; i < n; ++i) row[columns[i]] += values[i];
}

}  // namespace haste::cpu
