// cudaError_t as absl::Status.
#ifndef APRUNTIME_KVSTORE_CUDA_CUDA_STATUS_H_
#define APRUNTIME_KVSTORE_CUDA_CUDA_STATUS_H_

#include <cuda_runtime_api.h>

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace apr::kvstore {

inline absl::Status CudaStatus(cudaError_t e, std::string_view what) {
  if (e == cudaSuccess) return absl::OkStatus();
  const std::string msg = absl::StrCat(std::string(what), ": CUDA ", cudaGetErrorName(e), " (",
                                       cudaGetErrorString(e), ")");
  return e == cudaErrorMemoryAllocation ? absl::ResourceExhaustedError(msg)
                                        : absl::InternalError(msg);
}

}  // namespace apr::kvstore

#endif  // APRUNTIME_KVSTORE_CUDA_CUDA_STATUS_H_
