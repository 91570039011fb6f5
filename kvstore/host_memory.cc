#include "kvstore/host_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"

namespace apr::kvstore {

int64_t HostMemAvailableBytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  while (in >> key >> kib) {
    if (key == "MemAvailable:") return kib * 1024;
    in.ignore(256, '\n');
  }
  return -1;
}

absl::Status CheckHostMemoryFits(int64_t bytes, int64_t available) {
  if (available < 0 || bytes <= available) return absl::OkStatus();
  constexpr double kGiB = double(int64_t{1} << 30);
  return absl::ResourceExhaustedError(absl::StrFormat(
      "%.1f GiB of host memory asked for, and this host has %.1f GiB available (MemAvailable "
      "in /proc/meminfo): serve fewer sequences or a shorter context, or keep the KV cache on "
      "storage nodes of other hosts",
      bytes / kGiB, available / kGiB));
}

absl::StatusOr<HostRegion> HostRegion::Allocate(size_t bytes, bool populate) {
  if (bytes == 0) return absl::InvalidArgumentError("host region of 0 bytes requested");
  if (populate) {
    APR_RETURN_IF_ERROR(CheckHostMemoryFits(static_cast<int64_t>(bytes), HostMemAvailableBytes()));
  }
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t mapped = (bytes + page - 1) / page * page;
  int flags = MAP_PRIVATE | MAP_ANONYMOUS;
  if (populate) flags |= MAP_POPULATE;
  void* p = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, flags, -1, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot map ", bytes, " bytes of host memory: ", std::string(strerror(err))));
  }
  return HostRegion(static_cast<std::byte*>(p), bytes, mapped);
}

HostRegion::HostRegion(HostRegion&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      mapped_(std::exchange(other.mapped_, 0)) {}

HostRegion& HostRegion::operator=(HostRegion&& other) noexcept {
  if (this != &other) {
    Release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    mapped_ = std::exchange(other.mapped_, 0);
  }
  return *this;
}

HostRegion::~HostRegion() { Release(); }

void HostRegion::Release() {
  if (data_ != nullptr) munmap(data_, mapped_);
  data_ = nullptr;
  size_ = mapped_ = 0;
}

}  // namespace apr::kvstore
