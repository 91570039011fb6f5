// Page-aligned host memory for block pools and staging buffers.
#ifndef APRUNTIME_KVSTORE_HOST_MEMORY_H_
#define APRUNTIME_KVSTORE_HOST_MEMORY_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace apr::kvstore {

// MemAvailable of /proc/meminfo in bytes (what can be had without swapping); -1 when it
// cannot be read. Inside a container it is the host's figure, not the cgroup's limit.
int64_t HostMemAvailableBytes();

// Whether `bytes` may be populated now with `available` bytes available (-1: unknown, so
// yes): ResourceExhausted naming both sizes and what to change when not. Populating more
// than is available would swap or wake the OOM killer instead of returning an error.
absl::Status CheckHostMemoryFits(int64_t bytes, int64_t available);

// An anonymous private mapping, unmapped on destruction. Movable, not copyable.
// Registration for the GPU (kvstore/cuda/host_register.h) and for UCX (kvstore/ucx/ucx.h)
// are separate objects that refer to a region and must be destroyed before it.
class HostRegion {
 public:
  // Maps `bytes` (rounded up to the page size). With `populate`, every page is touched
  // now (MAP_POPULATE), so the first remote read or GPU registration pays no page faults.
  // ResourceExhausted when the kernel refuses, naming the size, and, with `populate`,
  // before mapping when `bytes` exceeds HostMemAvailableBytes() (CheckHostMemoryFits).
  static absl::StatusOr<HostRegion> Allocate(size_t bytes, bool populate);

  HostRegion() = default;
  HostRegion(HostRegion&& other) noexcept;
  HostRegion& operator=(HostRegion&& other) noexcept;
  HostRegion(const HostRegion&) = delete;
  HostRegion& operator=(const HostRegion&) = delete;
  ~HostRegion();

  std::byte* data() const { return data_; }
  // The usable size asked for (the mapping may be larger by less than a page).
  size_t size() const { return size_; }

 private:
  HostRegion(std::byte* data, size_t size, size_t mapped)
      : data_(data), size_(size), mapped_(mapped) {}
  void Release();

  std::byte* data_ = nullptr;
  size_t size_ = 0;
  size_t mapped_ = 0;
};

}  // namespace apr::kvstore

#endif  // APRUNTIME_KVSTORE_HOST_MEMORY_H_
