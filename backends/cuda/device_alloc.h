// Device allocation with the decoder's debug fill (CudaDecoderOptions::debug_fill_byte),
// and pinned host buffers, shared by the decoder and the parts it owns (GpuPredictor, the
// KV tiers).
#ifndef APRUNTIME_BACKENDS_CUDA_DEVICE_ALLOC_H_
#define APRUNTIME_BACKENDS_CUDA_DEVICE_ALLOC_H_

#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/device_buffer.h"

namespace apr::cuda {

// A device buffer of n elements; each byte set to fill_byte first unless it is negative
// (CudaDecoderOptions::debug_fill_byte).
template <typename T>
absl::Status Alloc(int fill_byte, DeviceBuffer<T>* b, int64_t n) {
  auto r = DeviceBuffer<T>::Allocate(static_cast<size_t>(n));
  if (!r.ok()) return r.status();
  *b = *std::move(r);
  if (fill_byte >= 0 && n > 0)
    APR_CUDA_RETURN_IF_ERROR(cudaMemset(b->get(), fill_byte, b->bytes()));
  return absl::OkStatus();
}

// A device buffer of n elements, each byte set to `byte` (the offload path's maps and
// lists, whose initial contents matter).
template <typename T>
absl::Status AllocZ(DeviceBuffer<T>* b, int64_t n, int byte) {
  auto r = DeviceBuffer<T>::Allocate(static_cast<size_t>(n));
  if (!r.ok()) return r.status();
  *b = *std::move(r);
  if (n > 0) APR_CUDA_RETURN_IF_ERROR(cudaMemset(b->get(), byte, b->bytes()));
  return absl::OkStatus();
}

// A pinned host buffer of n elements, contents as cudaMallocHost leaves them.
template <typename T>
absl::Status AllocPinned(PinnedBuffer<T>* b, int64_t n) {
  auto r = PinnedBuffer<T>::Allocate(static_cast<size_t>(n));
  if (!r.ok()) return r.status();
  *b = *std::move(r);
  return absl::OkStatus();
}

// The same, zeroed (host-side counts and lists the device or a thread reads before the
// first write).
template <typename T>
absl::Status AllocPinnedZ(PinnedBuffer<T>* b, int64_t n) {
  APR_RETURN_IF_ERROR(AllocPinned(b, n));
  if (n > 0) std::memset(b->get(), 0, n * sizeof(T));
  return absl::OkStatus();
}

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_DEVICE_ALLOC_H_
