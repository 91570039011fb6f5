// The CPU reference's side of runtime/kv_offload.h: packing its float32 [tokens][head_dim]
// caches into [2][16][head_dim] blocks for write-back, and assembling the blocks a decode
// step selected from the offload into a view that DecodeAttention reads.
#ifndef APRUNTIME_BACKENDS_CPU_KV_OFFLOAD_IO_H_
#define APRUNTIME_BACKENDS_CPU_KV_OFFLOAD_IO_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "backends/cpu/kv_cache.h"
#include "runtime/attention_hooks.h"
#include "runtime/kv_offload.h"

namespace apr::cpu {

// Bytes of one float32 block at `head_dim`.
constexpr int64_t OffloadBlockBytes(int64_t head_dim) {
  return 2 * kKvBlockTokens * head_dim * static_cast<int64_t>(sizeof(float));
}

// Writes the blocks of `layer` that became complete when the cache grew from `start` to
// `ctx` tokens (every KV head, one WriteBlocks call). `scratch` is reused memory.
absl::Status WriteCompletedBlocks(KvOffload& offload, const LayerKv& kv, int64_t layer,
                                  int64_t head_dim, int64_t start, int64_t ctx,
                                  std::vector<float>& scratch);

// Fills `view` (resized to `ctx` tokens per KV head) with every token that `spans` select
// (null: all tokens): complete blocks come from `offload` (one ReadBlocks call for the
// layer), the partial tail block from `kv`. Tokens outside the selected blocks are left
// unspecified; DecodeAttention with the same spans never reads them.
absl::Status GatherSelectedBlocks(KvOffload& offload, const LayerKv& kv, int64_t layer,
                                  int64_t head_dim, int64_t ctx,
                                  const std::vector<TokenSpans>* spans, LayerKv& view,
                                  std::vector<float>& scratch);

}  // namespace apr::cpu

#endif  // APRUNTIME_BACKENDS_CPU_KV_OFFLOAD_IO_H_
