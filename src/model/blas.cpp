// OpenBLAS sgemm split over OpenMP threads (see blas.hpp).
#include "model/blas.hpp"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <mutex>

namespace haste::blas {
namespace {

// Below this many multiply-adds a product runs on the calling thread.
constexpr int64_t kMinParallelWork = int64_t{1} << 18;

void pin_openblas_to_one_thread() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

CBLAS_TRANSPOSE cblas_op(Op op) { return op == Op::none ? CblasNoTrans : CblasTrans; }

}  // namespace

void gemm_serial(Op op_a, Op op_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  pin_openblas_to_one_thread();
  cblas_sgemm(CblasRowMajor, cblas_op(op_a), cblas_op(op_b), static_cast<blasint>(M),
              static_cast<blasint>(N), static_cast<blasint>(K), alpha, A, static_cast<blasint>(lda),
              B, static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
}

void gemm(Op op_a, Op op_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (threads == 1 || M * N * K < kMinParallelWork) {
    gemm_serial(op_a, op_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // Split the larger of M and N into one block per thread (rounded to multiples of 16 so each
  // block keeps sgemm's register tiles full). Row block i of C needs row block i of op(A):
  // rows of A when stored as is, columns when transposed; likewise for columns and op(B).
  const bool split_rows = M >= N;
  const int64_t extent = split_rows ? M : N;
  const int64_t block = (extent / threads + 15) / 16 * 16;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int t = 0; t < threads; ++t) {
    const int64_t begin = std::min(extent, t * block);
    const int64_t end = t == threads - 1 ? extent : std::min(extent, begin + block);
    if (begin >= end) continue;
    if (split_rows) {
      const float* a = A + (op_a == Op::none ? begin * lda : begin);
      gemm_serial(op_a, op_b, end - begin, N, K, alpha, a, lda, B, ldb, beta, C + begin * ldc, ldc);
    } else {
      const float* b = B + (op_b == Op::none ? begin : begin * ldb);
      gemm_serial(op_a, op_b, M, end - begin, K, alpha, A, lda, b, ldb, beta, C + begin, ldc);
    }
  }
}

}  // namespace haste::blas
