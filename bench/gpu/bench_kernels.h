// Stand-in compute for the storage-tier GPU benchmark, until the CUDA backend's decode
// step is on main: weight streaming at a layer's bytes (decode GEMVs are HBM-bound at
// small batch) and a split-K decode attention over bf16 blocks [2][16][head_dim] listed
// by slot, as the sparse decode step reads them from a GPU block pool.
#ifndef APRUNTIME_BENCH_GPU_BENCH_KERNELS_H_
#define APRUNTIME_BENCH_GPU_BENCH_KERNELS_H_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace apr::bench {

// Reads `bytes` of `weights` (16-byte aligned) once, as the GEMVs of a layer would.
cudaError_t LaunchWeightStream(const void* weights, int64_t bytes, uint32_t* sink,
                               cudaStream_t stream);

struct AttentionArgs {
  int32_t batch = 0;
  int32_t kv_heads = 0;
  int32_t group = 0;               // query heads per KV head (Llama-3.1-8B: 4)
  int32_t head_dim = 0;            // 128 (the kernel is written for 128)
  const float* q = nullptr;        // [batch][kv_heads * group][head_dim]
  const void* pool = nullptr;      // bf16 blocks [slot][2][16][head_dim]
  const int32_t* slots = nullptr;  // per (b, kv_head): blocks_per_list slots
  int32_t blocks_per_list = 0;     // every list has this many blocks
  int32_t blocks_per_split = 0;    // split-K: blocks per CTA
  float* partial = nullptr;        // [batch * q_heads][splits][head_dim + 2] scratch
  float* out = nullptr;            // [batch][q_heads][head_dim]
};

// Scratch floats AttentionArgs::partial needs.
int64_t AttentionScratchFloats(const AttentionArgs& a);

cudaError_t LaunchSparseAttention(const AttentionArgs& a, cudaStream_t stream);

}  // namespace apr::bench

#endif  // APRUNTIME_BENCH_GPU_BENCH_KERNELS_H_
