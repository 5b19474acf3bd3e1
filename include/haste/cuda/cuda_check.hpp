// One check for every CUDA runtime, cuBLAS and cuSPARSE call: HASTE_CUDA_CHECK(call) throws
// haste::Error naming the call, its file and line, and the library's own words for the status.
// Kernel launches are checked the same way through cudaGetLastError().
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusparse.h>

#include <haste/error.hpp>

namespace haste::cuda_detail {

inline const char* status_text(cudaError_t status) { return cudaGetErrorString(status); }
inline const char* status_text(cublasStatus_t status) { return cublasGetStatusString(status); }
inline const char* status_text(cusparseStatus_t status) { return cusparseGetErrorString(status); }

// Every library above uses 0 for success.
template <typename Status>
void check_status(Status status, const char* call, const char* file, int line) {
  if (status != Status{}) {
    fail("{}:{}: {} failed: {} (status {})", file, line, call, status_text(status),
         static_cast<int>(status));
  }
}

}  // namespace haste::cuda_detail

#define HASTE_CUDA_CHECK(call) ::haste::cuda_detail::check_status((call), #call, __FILE__, __LINE__)
