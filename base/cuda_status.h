// A CUDA runtime return code as absl::Status: the project's one conversion, for the
// storage tier's GPU side (kvstore/cuda) and the CUDA backend (backends/cuda/cuda_check.h
// adds the call site). Out of memory is RESOURCE_EXHAUSTED, so a caller can tell "too big"
// from "broken".
#ifndef APRUNTIME_BASE_CUDA_STATUS_H_
#define APRUNTIME_BASE_CUDA_STATUS_H_

#include <cuda_runtime_api.h>

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace apr {

// "<what>: cudaErrorName (description)" unless `e` is cudaSuccess.
inline absl::Status CudaStatus(cudaError_t e, std::string_view what) {
  if (e == cudaSuccess) return absl::OkStatus();
  const std::string msg =
      absl::StrCat(std::string(what), ": ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
  return e == cudaErrorMemoryAllocation ? absl::ResourceExhaustedError(msg)
                                        : absl::InternalError(msg);
}

}  // namespace apr

#endif  // APRUNTIME_BASE_CUDA_STATUS_H_
