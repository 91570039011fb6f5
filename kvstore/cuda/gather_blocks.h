// The gather kernel: copies scattered fixed-size blocks between two pools by index lists,
//   dst + dst_slots[i] * block_bytes  <-  src + src_slots[i] * block_bytes,  i < n.
// Reading from mapped pinned host memory (kvstore/cuda/host_register.h) it is how sparse
// blocks cross PCIe at near link speed (one kernel instead of one copy per block); the
// same kernel writes back (GPU slots -> mapped host pool) and copies staging buffers.
#ifndef APRUNTIME_KVSTORE_CUDA_GATHER_BLOCKS_H_
#define APRUNTIME_KVSTORE_CUDA_GATHER_BLOCKS_H_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace apr::kvstore {

// `src`, `dst`: device-accessible (device memory, or the device pointer of mapped host
// memory), 16-byte aligned. `src_slots` / `dst_slots`: device-accessible arrays of `n`
// slot indices; null means the identity (block i at slot i). `block_bytes`: a positive
// multiple of 16. Enqueues on `stream`; returns the launch error, if any.
cudaError_t LaunchGatherBlocks(const void* src, const uint32_t* src_slots, void* dst,
                               const uint32_t* dst_slots, int32_t n, int64_t block_bytes,
                               cudaStream_t stream);

// The same copy with the block count read from device memory when the kernel runs
// (`*n_device`, at most `max_n`): the caller can compute the lists on the device and the
// launch keeps one shape (CUDA-graph capturable). `grid` CTAs (0: a default that keeps
// enough 8 KiB reads in flight to saturate PCIe) stride over the blocks. Entries whose
// source slot is kNoSlot are skipped.
constexpr uint32_t kNoSlot = 0xffffffffu;
cudaError_t LaunchGatherBlocksCounted(const void* src, const uint32_t* src_slots, void* dst,
                                      const uint32_t* dst_slots, const int32_t* n_device,
                                      int32_t max_n, int64_t block_bytes, int grid,
                                      cudaStream_t stream);

}  // namespace apr::kvstore

#endif  // APRUNTIME_KVSTORE_CUDA_GATHER_BLOCKS_H_
