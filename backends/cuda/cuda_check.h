// CUDA and cuBLAS return codes as absl::Status, so that every call is checked and a failure
// names the call, the file and the line.
#ifndef APRUNTIME_BACKENDS_CUDA_CUDA_CHECK_H_
#define APRUNTIME_BACKENDS_CUDA_CUDA_CHECK_H_

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/cuda_status.h"
#include "base/status_macros.h"

namespace apr::cuda {

using ::apr::CudaStatus;

// "<what> failed at <file>:<line>: cudaErrorName (description)".
inline absl::Status CudaStatus(cudaError_t e, const char* what, const char* file, int line) {
  if (e == cudaSuccess) return absl::OkStatus();
  return ::apr::CudaStatus(e, absl::StrCat(what, " failed at ", file, ":", line));
}

inline absl::Status CublasStatus(cublasStatus_t e, const char* what, const char* file, int line) {
  if (e == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, " failed at ", file, ":", line, ": ",
                                          cublasGetStatusName(e), " (", cublasGetStatusString(e),
                                          ")"));
}

}  // namespace apr::cuda

// Returns the Status of a failed CUDA runtime call from the enclosing function.
#define APR_CUDA_RETURN_IF_ERROR(call)                                                          \
  do {                                                                                          \
    if (absl::Status _s = ::apr::cuda::CudaStatus((call), #call, __FILE__, __LINE__); !_s.ok()) \
      return _s;                                                                                \
  } while (0)

// After a kernel launch: the launch error (bad configuration, too much shared memory).
#define APR_CUDA_RETURN_IF_LAUNCH_ERROR(what)                                                    \
  do {                                                                                           \
    if (absl::Status _s = ::apr::cuda::CudaStatus(cudaGetLastError(), what, __FILE__, __LINE__); \
        !_s.ok())                                                                                \
      return _s;                                                                                 \
  } while (0)

#define APR_CUBLAS_RETURN_IF_ERROR(call)                                                          \
  do {                                                                                            \
    if (absl::Status _s = ::apr::cuda::CublasStatus((call), #call, __FILE__, __LINE__); !_s.ok()) \
      return _s;                                                                                  \
  } while (0)

#endif  // APRUNTIME_BACKENDS_CUDA_CUDA_CHECK_H_
