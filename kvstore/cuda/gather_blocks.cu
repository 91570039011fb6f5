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

// The same copy through the bulk copy engine of sm_90 (cp.async.bulk): one thread per
// CTA moves each block in pieces of up to kBulkPiece bytes, global -> shared memory
// (completing on an mbarrier) -> global, kBulkStages pieces in flight. A bulk read is one
// large request stream instead of 16-byte loads, and the CTA holds one warp, not four.
constexpr int kBulkStages = 4;
constexpr int kBulkPiece = 8192;

__device__ __forceinline__ uint32_t SharedAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__global__ void __launch_bounds__(32)
    GatherBlocksBulkKernel(const char* __restrict__ src, const uint32_t* __restrict__ src_slots,
                           char* __restrict__ dst, const uint32_t* __restrict__ dst_slots,
                           const int32_t* __restrict__ n_device, int32_t max_n,
                           int64_t block_bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  __shared__ alignas(128) char stage[kBulkStages][kBulkPiece];
  __shared__ alignas(8) uint64_t full[kBulkStages];
  if (threadIdx.x != 0) return;
  const int32_t n = min(*n_device, max_n);
  const int64_t pieces_per_block = (block_bytes + kBulkPiece - 1) / kBulkPiece;
  const int64_t items = int64_t{n} * pieces_per_block;
  for (int i = 0; i < kBulkStages; ++i)
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(SharedAddress(&full[i])));
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  // Item k of this CTA: global item blockIdx.x + k * gridDim.x (block, piece).
  auto locate = [&](int64_t item, const char** from, char** to, uint32_t* bytes) {
    const int64_t i = item / pieces_per_block, piece = item % pieces_per_block;
    const uint32_t s = src_slots[i];
    const int64_t off = piece * kBulkPiece;
    *bytes = static_cast<uint32_t>(min(int64_t{kBulkPiece}, block_bytes - off));
    *from = s == kNoSlot ? nullptr : src + int64_t{s} * block_bytes + off;
    *to = dst + int64_t{dst_slots[i]} * block_bytes + off;
  };
  auto load = [&](int64_t k) {
    const char* from;
    char* to;
    uint32_t bytes;
    locate(blockIdx.x + k * gridDim.x, &from, &to, &bytes);
    const int st = static_cast<int>(k % kBulkStages);
    const uint32_t bar = SharedAddress(&full[st]);
    if (from == nullptr) bytes = 0;  // skipped: arrive without a transfer
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes)
                 : "memory");
    if (bytes > 0) {
      asm volatile(
          "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, "
          "[%3];" ::"r"(SharedAddress(stage[st])),
          "l"(from), "r"(bytes), "r"(bar)
          : "memory");
    }
  };
  const int64_t mine = items > blockIdx.x ? (items - blockIdx.x + gridDim.x - 1) / gridDim.x : 0;
  for (int64_t k = 0; k < min(mine, int64_t{kBulkStages}); ++k) load(k);
  for (int64_t k = 0; k < mine; ++k) {
    const int st = static_cast<int>(k % kBulkStages);
    const uint32_t parity = static_cast<uint32_t>((k / kBulkStages) & 1);
    uint32_t done = 0;
    do {
      asm volatile(
          "{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; "
          "selp.u32 %0, 1, 0, p; }"
          : "=r"(done)
          : "r"(SharedAddress(&full[st])), "r"(parity)
          : "memory");
    } while (done == 0);
    const char* from;
    char* to;
    uint32_t bytes;
    locate(blockIdx.x + k * gridDim.x, &from, &to, &bytes);
    if (from != nullptr) {
      asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;" ::"l"(to),
                   "r"(SharedAddress(stage[st])), "r"(bytes)
                   : "memory");
      asm volatile("cp.async.bulk.commit_group;" ::: "memory");
    }
    if (k + kBulkStages < mine) {
      // The stage's store must have read shared memory before the next load fills it.
      asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory");
      load(k + kBulkStages);
    }
  }
  asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");  // stores done before the exit
#endif
}

}  // namespace

cudaError_t LaunchGatherBlocksCountedBulk(const void* src, const uint32_t* src_slots, void* dst,
                                          const uint32_t* dst_slots, const int32_t* n_device,
                                          int32_t max_n, int64_t block_bytes, int grid,
                                          cudaStream_t stream) {
  if (max_n <= 0) return cudaSuccess;
  if (block_bytes <= 0 || block_bytes % 16 != 0 || reinterpret_cast<uintptr_t>(src) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(dst) % 16 != 0 || src_slots == nullptr || dst_slots == nullptr ||
      n_device == nullptr) {
    return cudaErrorInvalidValue;
  }
  const int64_t pieces = (block_bytes + kBulkPiece - 1) / kBulkPiece;
  if (grid <= 0) grid = 528;  // 4 per SM of an H100, 4 pieces each: 16 MiB in flight
  if (grid > int64_t{max_n} * pieces) grid = static_cast<int>(int64_t{max_n} * pieces);
  GatherBlocksBulkKernel<<<grid, 32, 0, stream>>>(static_cast<const char*>(src), src_slots,
                                                  static_cast<char*>(dst), dst_slots, n_device,
                                                  max_n, block_bytes);
  return cudaGetLastError();
}

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
