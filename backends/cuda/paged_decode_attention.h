// Decode attention over a list of KV blocks (flash-decoding): one query token per
// sequence, grouped-query heads, keys and values in 16-token blocks of a slot pool.
//
// "Which blocks" and "where they are" arrive separately: per (sequence, KV head) row a list
// of logical block ids (ascending; they give token positions and the history column) and
// the slot of each in the pool. A row with count -1 is *dense*: every block of the
// sequence, slots from the resident SlotTable. The kernel splits each row's list into
// `splits` contiguous ranges (block_rules.h), one CTA each; the combine kernel merges the
// ranges. Besides the output the attention records, per listed block and query head, the
// block's largest logit; with the final softmax normaliser the combine turns that into the
// block's largest attention probability (the max-pooled row the history needs) without a
// second pass over K.
#ifndef APRUNTIME_BACKENDS_CUDA_PAGED_DECODE_ATTENTION_H_
#define APRUNTIME_BACKENDS_CUDA_PAGED_DECODE_ATTENTION_H_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backends/cuda/rope_append.h"

namespace apr::cuda {

struct BlockLists {
  // Row r = b * kv_heads + g. counts[r] entries at blocks/slots/starts + r * stride;
  // -1: dense (every block, from the SlotTable); 0: nothing (the row is skipped).
  const int32_t* counts = nullptr;
  const int32_t* blocks = nullptr;
  const int32_t* slots = nullptr;
  // Optional: the first attended token within each listed block (the token-exact local
  // window); null: 0.
  const int32_t* starts = nullptr;
  int stride = 0;
};

struct PagedDecodeArgs {
  int batch = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0;
  float scale = 0;           // softmax scale, 1/sqrt(head_dim)
  const float* q = nullptr;  // [batch][heads][head_dim], RoPE applied
  const __nv_bfloat16* pool = nullptr;
  const int32_t* context_lens = nullptr;  // [batch], the new token included
  const int32_t* seq_slots = nullptr;     // [batch] rows of table.group_table (dense rows)
  SlotTable table;                        // dense rows: slot of block b
  int layer = 0;
  BlockLists lists;  // counts == nullptr: every row dense
  // > 0: only keys at positions >= context_len - window are attended (Mistral's sliding
  // window), in dense rows and listed blocks alike; a block wholly before it is skipped
  // (its block_max entries -inf).
  int window = 0;
  int splits = 1;
  // Workspace: [batch * heads][splits][head_dim] and [batch * heads][splits][2] (m, l).
  float* part_o = nullptr;
  float* part_ml = nullptr;
  // Optional: the largest logit (log2 units) of each listed block per query head,
  // [batch * kv_heads][score_stride][group]; score_stride >= the longest row (dense rows
  // use the logical block id as the entry index).
  float* block_max = nullptr;
  int score_stride = 0;

  // Combine outputs.
  __nv_bfloat16* out = nullptr;  // [batch][heads * head_dim]
  // Optional: per listed block and query head, the block's largest attention probability,
  // laid out like block_max.
  float* block_probs = nullptr;
  // Optional history update (needs block_max): row `history_row[b]` of
  // history + ((seq_slots[b] * layers + layer) * kv_heads + g) * rows * cols is cleared
  // over the sequence's blocks and gets, per listed block, the max over the group's query
  // heads of the block's largest probability.
  float* history = nullptr;
  const int32_t* history_row = nullptr;  // [batch]
  int history_layers = 0, history_rows = 0, history_cols = 0;
  // Optional: per (batch entry, query head) the final softmax maximum and normaliser
  // [batch][heads][2] (log2 units: logits are scale * log2(e) * q.k), for the key-summary
  // calibration (offload_kernels.h). Not written with history_only.
  float* out_ml = nullptr;
  // Only the history: no V is read and `out` is not written (the calibration pass: full
  // attention probabilities for the history while the output used the sparse list).
  bool history_only = false;
};

// head_dim in {16, 32, 64, 128, 256}; heads / kv_heads in {1, 2, 3, 4, 8}.
bool PagedDecodeSupported(int head_dim, int group);
// Attention, then the combine kernel.
cudaError_t LaunchPagedDecodeAttention(const PagedDecodeArgs& a, cudaStream_t stream);

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_PAGED_DECODE_ATTENTION_H_
