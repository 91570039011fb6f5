// RoPE on the new queries and keys, and the append of the new keys and values into their
// KV blocks: one pass over the qkv projection's output.
#ifndef APRUNTIME_BACKENDS_CUDA_ROPE_APPEND_H_
#define APRUNTIME_BACKENDS_CUDA_ROPE_APPEND_H_

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
  __host__ __device__ int64_t Slot(int seq, int layer, int g, int block) const {
    return static_cast<int64_t>(group_table[static_cast<int64_t>(seq) * table_stride + block]) *
               slots_per_group +
           static_cast<int64_t>(layer) * num_kv_heads + g;
  }
};

// The GPU block cache of the offload placements (offload_kernels.h): block b of image
// i = (sequence slot * layers + layer) * kv_heads + g is in pool slot
// i * slots + where[i * max_blocks + b] (-1: not cached); tags is the inverse,
// [images][slots] (-1: a free slot); stamps, [images][slots], the context length of the
// last step that wanted the slot's block (the plan evicts the least recent first).
struct CacheMap {
  int32_t* where = nullptr;
  int32_t* tags = nullptr;
  int32_t* stamps = nullptr;
  int layers = 0, kv_heads = 0, max_blocks = 0, slots = 0;
};

struct RopeAppendArgs {
  const float* qkv = nullptr;  // [n][(heads + 2 * kv_heads) * head_dim]: q, k, v
  int n = 0;
  int num_heads = 0, num_kv_heads = 0, head_dim = 0;
  const float* inv_freq = nullptr;  // [head_dim / 2] (runtime/rope.h)
  // LongRoPE in a decode step: a token whose context (position + 1) passes long_after
  // rotates with these frequencies instead, as RopeForContext picks per forward pass.
  // Null: inv_freq for every token (prefill passes the table of its whole pass).
  const float* inv_freq_long = nullptr;
  int long_after = 0;
  // cos and sin are multiplied by it (RopeParams::attention_factor: yarn, longrope).
  float attention_factor = 1.0f;
  const int32_t* positions = nullptr;  // [n]
  const int32_t* seq_slots = nullptr;  // [n] the sequence slot each token belongs to
  SlotTable table;
  int layer = 0;
  float* q_out = nullptr;         // [n][heads][head_dim], RoPE applied
  __nv_bfloat16* pool = nullptr;  // slots of [2][16][head_dim]
  // When cache.where is set, the token's block is found in the GPU block cache instead of
  // through `table` (decode in the offload placements; the block must be cached).
  CacheMap cache;
  // Optional (decode only: one token per sequence): when the token completes its block,
  // the block's key summary (offload_kernels.h KeySummaryArgs layout, summary_layers
  // layers) is written.
  __nv_bfloat16* key_summary = nullptr;
  int summary_layers = 0, summary_blocks = 0;
};

cudaError_t LaunchRopeAppend(const RopeAppendArgs& a, cudaStream_t stream);

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_ROPE_APPEND_H_
