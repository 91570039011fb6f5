// Registration of host memory (a block pool or a staging buffer) for the GPU: page-locked
// and mapped into the GPU's address space (cudaHostRegisterMapped), so that a kernel reads
// it directly over PCIe; the gather kernel does, at about 92% of the link at any block
// size (docs/DESIGN facts). Kept apart from the pool so CPU-only builds need no CUDA.
#ifndef APRUNTIME_KVSTORE_CUDA_HOST_REGISTER_H_
#define APRUNTIME_KVSTORE_CUDA_HOST_REGISTER_H_

#include <cstddef>
#include <memory>

#include "absl/status/statusor.h"

namespace apr::kvstore {

class MappedHostMemory {
 public:
  // Registers [address, address + bytes) (page-aligned, e.g. a HostRegion) with every
  // GPU (cudaHostRegisterPortable | cudaHostRegisterMapped). The memory must outlive this.
  static absl::StatusOr<std::unique_ptr<MappedHostMemory>> Register(void* address, size_t bytes);
  // Unregisters.
  ~MappedHostMemory();
  MappedHostMemory(const MappedHostMemory&) = delete;
  MappedHostMemory& operator=(const MappedHostMemory&) = delete;

  void* host_pointer() const { return host_; }
  // The address kernels use (equal to the host address under unified addressing).
  void* device_pointer() const { return device_; }
  size_t bytes() const { return bytes_; }

 private:
  MappedHostMemory(void* h, void* d, size_t n) : host_(h), device_(d), bytes_(n) {}
  void* host_;
  void* device_;
  size_t bytes_;
};

}  // namespace apr::kvstore

#endif  // APRUNTIME_KVSTORE_CUDA_HOST_REGISTER_H_
