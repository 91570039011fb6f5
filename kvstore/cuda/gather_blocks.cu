#include "kvstore/cuda/gather_blocks.h"

namespace apr::kvstore {
namespace {

constexpr int kThreads = 128;
constexpr int kUnroll = 4;  // 16-byte loads in flight per thread before the stores

// One CTA per block (grid-stride over blocks). Each thread moves kUnroll 16-byte vectors
// per round: all loads first, then all stores, so that a CTA keeps 8 KiB of reads in
// flight against PCIe latency.
__global__ void __launch_bounds__(kThreads)
    GatherBlocksKernel(const uint4* __restrict__ src, const uint32_t* __restrict__ src_slots,
                       uint4* __restrict__ dst, const uint32_t* __restrict__ dst_slots, int32_t n,
                       int64_t vecs) {
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const int64_t s = src_slots != nullptr ? src_slots[i] : i;
    const int64_t d = dst_slots != nullptr ? dst_slots[i] : i;
    const uint4* from = src + s * vecs;
    uint4* to = dst + d * vecs;
    for (int64_t base = 0; base < vecs; base += int64_t{kThreads} * kUnroll) {
      uint4 v[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t j = base + u * kThreads + threadIdx.x;
        if (j < vecs) v[u] = from[j];
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t j = base + u * kThreads + threadIdx.x;
        if (j < vecs) to[j] = v[u];
      }
    }
  }
}

// Like GatherBlocksKernel with the count in device memory; a kNoSlot source is skipped.
__global__ void __launch_bounds__(kThreads)
    GatherBlocksCountedKernel(const uint4* __restrict__ src, const uint32_t* __restrict__ src_slots,
                              uint4* __restrict__ dst, const uint32_t* __restrict__ dst_slots,
                              const int32_t* __restrict__ n_device, int32_t max_n, int64_t vecs) {
  const int32_t n = min(*n_device, max_n);
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const uint32_t s32 = src_slots[i];
    if (s32 == kNoSlot) continue;
    const uint4* from = src + int64_t{s32} * vecs;
    uint4* to = dst + int64_t{dst_slots[i]} * vecs;
    for (int64_t base = 0; base < vecs; base += int64_t{kThreads} * kUnroll) {
      uint4 v[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t j = base + u * kThreads + threadIdx.x;
        if (j < vecs) v[u] = from[j];
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t j = base + u * kThreads + threadIdx.x;
        if (j < vecs) to[j] = v[u];
      }
    }
  }
}

}  // namespace

cudaError_t LaunchGatherBlocksCounted(const void* src, const uint32_t* src_slots, void* dst,
                                      const uint32_t* dst_slots, const int32_t* n_device,
                                      int32_t max_n, int64_t block_bytes, int grid,
                                      cudaStream_t stream) {
  if (max_n <= 0) return cudaSuccess;
  if (block_bytes <= 0 || block_bytes % 16 != 0 || reinterpret_cast<uintptr_t>(src) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(dst) % 16 != 0 || src_slots == nullptr || dst_slots == nullptr ||
      n_device == nullptr) {
    return cudaErrorInvalidValue;
  }
  // 1056 CTAs of 128 threads (8 per SM of an H100) keep 8 MiB of reads in flight, far
  // above PCIe's bandwidth-delay product, and leave most of each SM to the compute stream.
  if (grid <= 0) grid = 1056;
  if (grid > max_n) grid = max_n;
  GatherBlocksCountedKernel<<<grid, kThreads, 0, stream>>>(
      static_cast<const uint4*>(src), src_slots, static_cast<uint4*>(dst), dst_slots, n_device,
      max_n, block_bytes / 16);
  return cudaGetLastError();
}

cudaError_t LaunchGatherBlocks(const void* src, const uint32_t* src_slots, void* dst,
                               const uint32_t* dst_slots, int32_t n, int64_t block_bytes,
                               cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  if (block_bytes <= 0 || block_bytes % 16 != 0 || reinterpret_cast<uintptr_t>(src) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(dst) % 16 != 0) {
    return cudaErrorInvalidValue;
  }
  // Enough CTAs to fill the GPU several times over; more blocks are strided.
  const int grid = n < 65535 ? n : 65535;
  GatherBlocksKernel<<<grid, kThreads, 0, stream>>>(static_cast<const uint4*>(src), src_slots,
                                                    static_cast<uint4*>(dst), dst_slots, n,
                                                    block_bytes / 16);
  return cudaGetLastError();
}

}  // namespace apr::kvstore
