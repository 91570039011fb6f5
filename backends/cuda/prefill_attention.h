// Prefill attention of one sequence: causal, grouped-query, over the sequence's KV blocks
// in the slot pool (the new tokens' keys and values already appended), tiled with an
// online softmax (flash-style): 32 query rows of one head per CTA, one 16-token KV block
// per step, nothing of size context x context is ever stored.
//
// Also the history's initial rows: the attention of the last prompt tokens, max-pooled
// over blocks and over each KV head's query heads.
#ifndef APRUNTIME_BACKENDS_CUDA_PREFILL_ATTENTION_H_
#define APRUNTIME_BACKENDS_CUDA_PREFILL_ATTENTION_H_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backends/cuda/rope_append.h"

namespace apr::cuda {

struct PrefillAttentionArgs {
  int num_heads = 0, num_kv_heads = 0, head_dim = 0;
  float scale = 0;
  const float* q = nullptr;  // [n][heads][head_dim], positions start .. start + n - 1
  int n = 0, start = 0;
  const __nv_bfloat16* pool = nullptr;
  int seq_slot = 0;
  SlotTable table;
  int layer = 0;
  __nv_bfloat16* out = nullptr;  // [n][heads * head_dim]
  // > 0: a query at position p sees only keys (p - window, p] (Mistral's sliding window;
  // always the CUDA-core kernel).
  int window = 0;
  // The CUDA-core kernel even for head dims the tensor-core one takes (64, 128): tests and
  // benchmarks compare the two.
  bool cuda_cores = false;
};

bool PrefillAttentionSupported(int head_dim);
cudaError_t LaunchPrefillAttention(const PrefillAttentionArgs& a, cudaStream_t stream);

struct PrefillHistoryArgs {
  int num_heads = 0, num_kv_heads = 0, head_dim = 0;
  float scale = 0;
  const float* q = nullptr;  // [rows][heads][head_dim]: the last `rows` prompt tokens
  int rows = 0;              // <= history_rows
  int first_pos = 0;         // position of q's first row
  const __nv_bfloat16* pool = nullptr;
  int seq_slot = 0;
  SlotTable table;
  int layer = 0;
  // history + ((seq_slot * layers + layer) * kv_heads + g) * history_rows * cols, a ring of
  // history_rows >= 64 rows: rows [64 - rows, 64) get the pooled probabilities (oldest
  // first; row 63 is then the newest); every ring row is cleared over the first
  // NumBlocks(first_pos + rows) columns first.
  float* history = nullptr;
  int history_layers = 0, history_rows = 0, history_cols = 0;
  // The tensor-core kernels (head dims 64 and 128) split the keys over CTAs and keep each
  // split's softmax max and sum here: PrefillHistoryScratchFloats(num_heads) floats.
  float* scratch = nullptr;
  int max_splits = 0;  // > 0: at most this many key splits (tests: several blocks a split)
  // The CUDA-core kernel even where the tensor-core one applies (tests, benchmarks).
  bool cuda_cores = false;
};

int64_t PrefillHistoryScratchFloats(int num_heads);
cudaError_t LaunchPrefillHistory(const PrefillHistoryArgs& a, cudaStream_t stream);

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_PREFILL_ATTENTION_H_
