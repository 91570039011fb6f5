// Owning handles for device memory (cudaMalloc) and pinned host memory (cudaMallocHost).
#ifndef APRUNTIME_BACKENDS_CUDA_DEVICE_BUFFER_H_
#define APRUNTIME_BACKENDS_CUDA_DEVICE_BUFFER_H_

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace apr::cuda {

// `count` elements of T in device memory; moves, never copies.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  static absl::StatusOr<DeviceBuffer> Allocate(size_t count) {
    DeviceBuffer b;
    if (count == 0) return b;
    cudaError_t e = cudaMalloc(&b.ptr_, count * sizeof(T));
    if (e != cudaSuccess) {
      b.ptr_ = nullptr;
      // The failure stays as the thread's last error; cleared here, or the next kernel
      // launch's cudaGetLastError would report this handled allocation as its own.
      (void)cudaGetLastError();
      return absl::ResourceExhaustedError(
          absl::StrCat("cudaMalloc of ", count * sizeof(T), " bytes: ", cudaGetErrorString(e)));
    }
    b.count_ = count;
    return b;
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(count_, o.count_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }

  T* get() const { return ptr_; }
  size_t size() const { return count_; }
  size_t bytes() const { return count_ * sizeof(T); }

 private:
  T* ptr_ = nullptr;
  size_t count_ = 0;
};

// `count` elements of T in page-locked host memory (the source of graph-captured copies).
template <typename T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  static absl::StatusOr<PinnedBuffer> Allocate(size_t count) {
    PinnedBuffer b;
    if (count == 0) return b;
    cudaError_t e = cudaMallocHost(&b.ptr_, count * sizeof(T));
    if (e != cudaSuccess) {
      b.ptr_ = nullptr;
      // The failure stays as the thread's last error; cleared here, or the next kernel
      // launch's cudaGetLastError would report this handled allocation as its own.
      (void)cudaGetLastError();
      return absl::ResourceExhaustedError(
          absl::StrCat("cudaMallocHost of ", count * sizeof(T), " bytes: ", cudaGetErrorString(e)));
    }
    b.count_ = count;
    return b;
  }
  PinnedBuffer(PinnedBuffer&& o) noexcept { *this = std::move(o); }
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(count_, o.count_);
    return *this;
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  ~PinnedBuffer() {
    if (ptr_ != nullptr) cudaFreeHost(ptr_);
  }

  T* get() const { return ptr_; }
  T& operator[](size_t i) const { return ptr_[i]; }
  size_t size() const { return count_; }

 private:
  T* ptr_ = nullptr;
  size_t count_ = 0;
};

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_DEVICE_BUFFER_H_
