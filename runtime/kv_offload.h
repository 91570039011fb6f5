// How a backend keeps a sequence's completed KV blocks outside its own memory (the storage
// tier, kvstore/) and reads back the blocks a decode step attends to. Backends call it;
// kvstore/ implements it (kvstore/tier_kv_offload.h), as predictor/ implements
// attention_hooks.h.
//
// A block is 16 tokens of one (layer, KV head), laid out [2 (K, V)][16 tokens][head_dim]
// in the backend's element type (float32 for the CPU reference, bf16 on the GPU), RoPE
// applied to K. Block i holds tokens [16 i, 16 i + 16). Only complete blocks are written;
// the partial tail block stays with the backend.
#ifndef APRUNTIME_RUNTIME_KV_OFFLOAD_H_
#define APRUNTIME_RUNTIME_KV_OFFLOAD_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "runtime/algorithm_constants.h"

namespace apr {

inline constexpr int64_t kKvBlockTokens = kBlockTokens;

struct KvBlockRef {
  int64_t layer = 0;
  int64_t kv_head = 0;
  int64_t block = 0;
};

class KvOffload {
 public:
  virtual ~KvOffload() = default;

  // Bytes of one block; the backend checks it against 2 x 16 x head_dim x element size.
  virtual int64_t block_bytes() const = 0;

  // Keeps complete blocks: `data[i]` (block_bytes() bytes) holds `blocks[i]`. Blocks of
  // one (layer, KV head) arrive in order. When this returns OK they can be read back.
  virtual absl::Status WriteBlocks(absl::Span<const KvBlockRef> blocks,
                                   absl::Span<const void* const> data) = 0;

  // Copies blocks written before into `dst[i]` (block_bytes() bytes each). Returns when
  // the bytes are there: a block that is not yet fetched is waited for, never skipped.
  virtual absl::Status ReadBlocks(absl::Span<const KvBlockRef> blocks,
                                  absl::Span<void* const> dst) = 0;
};

}  // namespace apr

#endif  // APRUNTIME_KV_OFFLOAD_H_
