// RoPE on the new queries and keys, and the append of the new keys and values into their
// KV blocks: one pass over the qkv projection's output.
#ifndef APRUNTIME_RUNTIME_CUDA_ROPE_APPEND_H_
#define APRUNTIME_RUNTIME_CUDA_ROPE_APPEND_H_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace apr::cuda {

// Where block `b` of (sequence slot s, layer l, KV head g) lives in the slot pool, for the
// resident pool (kv_pool.h): slot = group_table[s * table_stride + b] * slots_per_group
//                                   + l * num_kv_heads + g.
struct SlotTable {
  const int32_t* group_table = nullptr;  // [sequence slots][table_stride]
  int table_stride = 0;
  int slots_per_group = 0;  // layers * kv heads
  int num_kv_heads = 0;
};

struct RopeAppendArgs {
  const float* qkv = nullptr;  // [n][(heads + 2 * kv_heads) * head_dim]: q, k, v
  int n = 0;
  int num_heads = 0, num_kv_heads = 0, head_dim = 0;
  const float* inv_freq = nullptr;     // [head_dim / 2] (runtime/rope.h)
  const int32_t* positions = nullptr;  // [n]
  const int32_t* seq_slots = nullptr;  // [n] the sequence slot each token belongs to
  SlotTable table;
  int layer = 0;
  float* q_out = nullptr;         // [n][heads][head_dim], RoPE applied
  __nv_bfloat16* pool = nullptr;  // slots of [2][16][head_dim]
};

cudaError_t LaunchRopeAppend(const RopeAppendArgs& a, cudaStream_t stream);

}  // namespace apr::cuda

#endif  // APRUNTIME_RUNTIME_CUDA_ROPE_APPEND_H_
