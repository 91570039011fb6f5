// predictor-hybrid on the GPU (SparseOptions::hybrid; the CPU policy of that name,
// predictor/policy.cc AddQueryBlocks). The CNN predicts one step ahead and cannot foresee
// a block the text retrieves for the first time, so when the candidates do not fit, a
// quarter of the k predicted blocks (at least one, block_rules.h HybridQueryBlocks) are
// chosen at the step itself: the candidates the CNN left out, ranked by the current
// query's Quest bound over the per-block key summary (offload_kernels.h KeySummaryArgs),
//   bound = max over the group's query heads h of sum_d max(q_hd * min_d, q_hd * max_d),
// summed in the CPU's order with unfused float operations, so equal inputs give equal
// bounds; ties go to the lower block, NaN last (the CPU's TopK).
#ifndef APRUNTIME_BACKENDS_CUDA_PREDICTOR_HYBRID_SELECT_H_
#define APRUNTIME_BACKENDS_CUDA_PREDICTOR_HYBRID_SELECT_H_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backends/cuda/predictor/topk_select.h"
#include "backends/cuda/rope_append.h"

namespace apr::cuda {

struct QuerySelectArgs {
  int batch = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0;
  int layer = 0;                          // the model's layer (key summaries, cache, tier)
  int sel_layer = 0;                      // its index in `sel` (layer - dense_layers)
  int k_blocks = 0;                       // PredictedBlocks(budget)
  const float* q = nullptr;               // [batch][heads][head_dim], RoPE applied, unscaled
  const int32_t* context_lens = nullptr;  // [batch] this step's
  const int32_t* seq_slots = nullptr;     // [batch]
  Selection sel;                          // the CNN's part, made for context_lens
  // BuildListsArgs::sel_checked: the step's first BuildLists checked the length already.
  bool sel_checked = false;
  const __nv_bfloat16* summary = nullptr;  // [seq][summary_layers][kv_heads][max_blocks][2][hd]
  int summary_layers = 0, max_blocks = 0;
  // Output per batch row (b * kv_heads + g): the query's blocks, ascending.
  int32_t* blocks = nullptr;  // [batch * kv_heads][stride]
  int32_t* counts = nullptr;  // [batch * kv_heads]
  int stride = 0;             // >= HybridQueryBlocks(k_blocks)
  // Offloaded (cache.where set): a chosen block the GPU block cache does not hold is
  // fetched for this step only, into the image's own pool slot query_slot_base + image *
  // stride + j (slots[row * stride + j]; -1: cached, BuildLists resolves it), listed at
  // *fetch_count (zeroed before) as tier slot -> pool slot.
  CacheMap cache;
  const uint32_t* tier = nullptr;  // [sequence slots][max_blocks][layers][kv_heads]
  int64_t query_slot_base = 0;
  int32_t* slots = nullptr;
  uint32_t* fetch_src = nullptr;
  uint32_t* fetch_dst = nullptr;
  int32_t* fetch_count = nullptr;
  int max_fetch = 0;
  unsigned long long* counters = nullptr;  // kCounterFetched += blocks listed
  int32_t* error = nullptr;  // a selection for another length; a block without a tier slot
};

// The most query blocks a row may take (a thread each places them): budgets up to
// 128 + 16 * 4 * 256 tokens.
constexpr int kQuerySelectMaxBlocks = 256;

// One CTA per (KV head, batch entry).
cudaError_t LaunchQuerySelect(const QuerySelectArgs& a, cudaStream_t stream);

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_PREDICTOR_HYBRID_SELECT_H_
