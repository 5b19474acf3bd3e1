// Dense matrix products for the encoder and the head: OpenBLAS's sgemm, row-major.
//
// OpenBLAS runs single-threaded here and the product is split into blocks of output rows (or
// columns) over OpenMP threads: the library's own pthread pool would compete with the OpenMP
// team for the same cores (both spin while waiting), and a fixed split keeps results identical
// from run to run for a given thread count. Where OpenBLAS does not know the CPU and falls back
// to its SSE3 kernels, the first product switches it to the AVX2 or AVX-512 ones (blas.cpp).
#pragma once

#include <cstdint>

namespace haste::blas {

enum class Op { none, transpose };

// C [M, N] = alpha * op(A) op(B) + beta * C, with op(A) [M, K] and op(B) [K, N]; lda, ldb and
// ldc are the row strides of A, B and C as stored.
void gemm(Op op_a, Op op_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// The same on the calling thread only (for callers that are already inside a parallel loop).
void gemm_serial(Op op_a, Op op_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

}  // namespace haste::blas
