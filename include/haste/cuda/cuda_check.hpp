// One check for every CUDA runtime, cuBLAS and cuSPARSE call: HASTE_CUDA_CHECK(call) throws
// haste::Error naming the call, its file and line, and the library's own words for the status.
// Kernel launches are checked the same way through cudaGetLastError().
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusparse.h>

#include <haste/error.hpp>
#include <type_traits>

namespace haste::cuda_detail {

inline const char* status_text(cudaError_t status) { return cudaGetErrorString(status); }
inline const char* status_text(cublasStatus_t status) { return cublasGetStatusString(status); }
inline const char* status_text(cusparseStatus_t status) { return cusparseGetErrorString(status); }

// Every library above uses 0 for success. A failed runtime call also stays the runtime's "last
// error" until read, so the next launch check would report it again after the caller had handled
// this one (a test asking for a second GPU that is not there failed the next test's first
// kernel launch): it is read here, before the throw.
template <typename Status>
void check_status(Status status, const char* call, const char* file, int line) {
  if (status != Status{}) {
    if constexpr (std::is_same_v<Status, cudaError_t>) cudaGetLastError();
    fail("{}:{}: {} failed: {} (status {})", file, line, call, status_text(status),
         static_cast<int>(status));
  }
}

}  // namespace haste::cuda_detail

#define HASTE_CUDA_CHECK(call) ::haste::cuda_detail::check_status((call), #call, __FILE__, __LINE__)
