// Attention of the CPU reference decoder over one layer's KV cache.
#ifndef APRUNTIME_BACKENDS_CPU_ATTENTION_H_
#define APRUNTIME_BACKENDS_CPU_ATTENTION_H_

#include <cstdint>
#include <vector>

#include "backends/cpu/kv_cache.h"
#include "runtime/attention_hooks.h"

namespace apr::cpu {

struct AttentionDims {
  int64_t num_heads;
  int64_t num_kv_heads;
  int64_t head_dim;
  // When > 0, a query at position p sees only keys (p - sliding_window, p], as transformers'
  // sliding_window_overlay (kv_idx > q_idx - sliding_window) does.
  int64_t sliding_window = 0;
};

// Causal attention for `rows` queries at positions [start, start + rows) over keys
// [0, start + rows) (within the sliding window, if any). q and out are [rows][num_heads *
// head_dim]. When `observed` is given it receives the probabilities of the last `observed_rows`
// queries, [num_heads][observed_rows][start + rows].
void PrefillAttention(const AttentionDims& d, const LayerKv& kv, const float* q, int64_t start,
                      int64_t rows, float* out, float* observed, int64_t observed_rows);

// One query per head over the tokens in `spans` (per KV head; null: all `context_len`
// tokens), less those outside the sliding window. Only the selected keys are read. q and out are
// [num_heads * head_dim]. When `probs` is given it receives [num_heads][context_len], zero outside
// the spans.
void DecodeAttention(const AttentionDims& d, const LayerKv& kv, const float* q, int64_t context_len,
                     const std::vector<TokenSpans>* spans, float* out, float* probs);

}  // namespace apr::cpu

#endif  // APRUNTIME_BACKENDS_CPU_ATTENTION_H_
