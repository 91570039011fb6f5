#include "kvstore/cuda/host_register.h"

#include <cuda_runtime_api.h>

#include "absl/strings/str_cat.h"
#include "base/cuda_status.h"
#include "base/status_macros.h"

namespace apr::kvstore {

absl::StatusOr<std::unique_ptr<MappedHostMemory>> MappedHostMemory::Register(void* address,
                                                                             size_t bytes) {
  APR_RETURN_IF_ERROR(CudaStatus(
      cudaHostRegister(address, bytes, cudaHostRegisterPortable | cudaHostRegisterMapped),
      absl::StrCat("cudaHostRegister of ", bytes, " bytes (pinned, mapped)")));
  void* device = nullptr;
  if (absl::Status s = CudaStatus(cudaHostGetDevicePointer(&device, address, 0),
                                  "cudaHostGetDevicePointer of a registered pool");
      !s.ok()) {
    cudaHostUnregister(address);
    return s;
  }
  return std::unique_ptr<MappedHostMemory>(new MappedHostMemory(address, device, bytes));
}

MappedHostMemory::~MappedHostMemory() { cudaHostUnregister(host_); }

}  // namespace apr::kvstore
