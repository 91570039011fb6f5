// The CPU reference's KV cache: per layer and KV head, keys and values as
// [tokens][head_dim] float arrays that grow as tokens arrive (RoPE already applied to K).
#ifndef APRUNTIME_BACKENDS_CPU_KV_CACHE_H_
#define APRUNTIME_BACKENDS_CPU_KV_CACHE_H_

#include <cstdint>
#include <vector>

namespace apr::cpu {

struct HeadKv {
  std::vector<float> k, v;
};

struct LayerKv {
  std::vector<HeadKv> heads;  // [num_kv_heads]
};

}  // namespace apr::cpu

#endif  // APRUNTIME_BACKENDS_CPU_KV_CACHE_H_
