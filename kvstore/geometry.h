// The size of one KV block and how to derive it from a model's geometry.
#ifndef APRUNTIME_KVSTORE_GEOMETRY_H_
#define APRUNTIME_KVSTORE_GEOMETRY_H_

#include <cstdint>

#include "runtime/algorithm_constants.h"

namespace apr::kvstore {

// Tokens per block (docs/ARCHITECTURE.md: the unit of selection, storage and transfer).
inline constexpr int64_t kBlockTokens = ::apr::kBlockTokens;

// Bytes of one block laid out [2 (K, V)][kBlockTokens][head_dim] with `element_bytes` per
// element: 8 KiB at head_dim 128 in bf16 (the GPU path), 8 KiB at head_dim 64 in float32
// (the CPU reference). The storage tier only moves bytes; the element type is the client's.
constexpr int64_t BlockBytes(int64_t head_dim, int64_t element_bytes) {
  return 2 * kBlockTokens * head_dim * element_bytes;
}

// Logical blocks covering `tokens` tokens, the partial tail block included.
constexpr int64_t BlocksFor(int64_t tokens) { return (tokens + kBlockTokens - 1) / kBlockTokens; }

}  // namespace apr::kvstore

#endif  // APRUNTIME_KVSTORE_GEOMETRY_H_
