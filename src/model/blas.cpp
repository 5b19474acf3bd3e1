// OpenBLAS sgemm split over OpenMP threads (see blas.hpp).
#include "model/blas.hpp"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <string_view>

// OpenBLAS's kernel choice, exported by its DYNAMIC_ARCH builds (Debian's); weak, so that a
// build without them links and keeps whatever kernels it has.
extern "C" {
void gotoblas_dynamic_init() __attribute__((weak));
void gotoblas_dynamic_quit() __attribute__((weak));
}

namespace haste::blas {
namespace {

// Below this many multiply-adds a product runs on the calling thread.
constexpr int64_t kMinParallelWork = int64_t{1} << 18;

// OpenBLAS picks its kernels by CPU model number, and a release older than the CPU falls back
// to its Prescott (SSE3) kernels: Debian 12's 0.3.21 does so on Emerald Rapids Xeons (family 6,
// model 207), where every product then ran about 3x slower. When that fallback happened and the
// user set no OPENBLAS_CORETYPE, choose by the CPU's features instead, through the same
// variable (which the process's children then inherit).
void replace_fallback_kernels() {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr || gotoblas_dynamic_init == nullptr ||
      gotoblas_dynamic_quit == nullptr || std::string_view(openblas_get_corename()) != "Prescott") {
    return;
  }
  const char* core = nullptr;
  if (__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) {
    core = "SkylakeX";
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    core = "Haswell";
  }
  if (core == nullptr) return;
  setenv("OPENBLAS_CORETYPE", core, 0);
  gotoblas_dynamic_quit();
  gotoblas_dynamic_init();
}

void set_up_openblas() {
  static std::once_flag once;
  std::call_once(once, [] {
    replace_fallback_kernels();
    openblas_set_num_threads(1);
  });
}

CBLAS_TRANSPOSE cblas_op(Op op) { return op == Op::none ? CblasNoTrans : CblasTrans; }

}  // namespace

void gemm_serial(Op op_a, Op op_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  set_up_openblas();
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
