// Kernels of the offload placements (docs/CUDA.md "KV offload"): the GPU block cache's
// residency plan (which blocks of the next step's selection are missing, which cache slots
// they replace), the bookkeeping of the prefetch (issued / done counters, stall probes),
// the per-block key summary and the calibration row estimated from it, and the seeding of
// a sequence's cache.
//
// The GPU block cache: per image (sequence slot, layer, KV head) `slots` slots of the GPU
// pool; cache slot c of image i is pool slot i * slots + c. `where` maps a logical block to
// its cache slot (-1: not cached), `tags` a cache slot to its block (-1: free). Both live on
// the device and only kernels change them, so a decode step keeps one shape whatever the
// selection (CUDA-graph capturable).
#ifndef APRUNTIME_BACKENDS_CUDA_OFFLOAD_KERNELS_H_
#define APRUNTIME_BACKENDS_CUDA_OFFLOAD_KERNELS_H_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backends/cuda/paged_decode_attention.h"
#include "backends/cuda/predictor/topk_select.h"
#include "backends/cuda/rope_append.h"

namespace apr::cuda {

// Device counters of the offload path (unsigned long long each), cumulative.
enum OffloadCounter {
  kCounterFetched = 0,  // blocks put in a fetch list (tier -> GPU cache)
  kCounterHits,         // predicted blocks already cached (not fetched)
  kCounterPredicted,    // predicted blocks planned
  kCounterWaits,        // layer waits of decode steps on their fetch (probed)
  kCounterStalls,       // ... that found the fetch not complete
  kCounterWrittenBack,  // blocks put in a write-back list (GPU cache -> tier)
  kCounterPlans,        // images planned
  kOffloadCounters
};

// Tier slot "none" (kvstore/cuda/gather_blocks.h kNoSlot).
constexpr uint32_t kNoTierSlot = 0xffffffffu;

// The GPU block cache's maps are CacheMap (rope_append.h).
//
// Which blocks a cache must hold for a step of context `len` besides its predicted
// selection: the sink blocks [0, SinkBlocks(len)) and the local window's blocks
// [FirstLocalBlock(len), NumBlocks(len)) (the tail block included). Blocks
// [0, FullBlocksBefore(len)) are complete before the step appends its token and are in the
// tier; block (len - 1) / 16 is created by the step when (len - 1) % 16 == 0.

// One launch plans `layer_count` consecutive layers from `layer` (grid z): the lists,
// counts and scratch below are per layer, the next layer's `max_fetch` (fetch lists),
// `max_wb` (write-back lists), 1 (counts) and batch * kv_heads * slots (scratch) entries on.
struct CachePlanArgs {
  int batch = 0;
  int layer = 0;
  int layer_count = 1;
  const int32_t* next_lens = nullptr;  // [batch] context length of the step planned for
  const int32_t* seq_slots = nullptr;  // [batch]
  Selection sel;                       // made for next_lens (checked; *error otherwise)
  // sel's layer 0 is this model layer (SparseOptions::dense_layers: the dense layers are
  // not predicted); `layer` and the cache count the model's layers.
  int sel_first_layer = 0;
  CacheMap cache;
  // Tier slot of every complete block: [sequence slots][max_blocks][layers][kv_heads].
  uint32_t* tier = nullptr;
  // false: predicted blocks are fetched even when cached (the full-offload baseline).
  bool reuse = true;
  // Fetch list of this layer (tier slot -> GPU pool slot), appended to at *fetch_count
  // (zeroed before the launch); at most max_fetch entries.
  uint32_t* fetch_src = nullptr;
  uint32_t* fetch_dst = nullptr;
  int32_t* fetch_count = nullptr;
  int max_fetch = 0;
  // Write-back of the block the current step filled (when (next_len - 1) % 16 == 0):
  // GPU pool slot -> wb_slots[(b * layers + layer) * kv_heads + g], appended to wb_src /
  // wb_dst at *wb_count (zeroed before). Null wb_slots: no write-back (prefill wrote them).
  // record_tier: the destination is the block's tier slot; note it in `tier`.
  const uint32_t* wb_slots = nullptr;
  bool record_tier = false;
  uint32_t* wb_src = nullptr;
  uint32_t* wb_dst = nullptr;
  int32_t* wb_count = nullptr;
  int max_wb = 0;              // write-back list entries per layer (layer_count > 1)
  int32_t* scratch = nullptr;  // [layer_count][batch * kv_heads][slots] ints
  unsigned long long* counters = nullptr;
  int32_t* issued = nullptr;  // issued[layer] += 1
  int32_t* error = nullptr;   // set to 1 on an inconsistency (the step must fail)
};

// One CTA per (KV head, batch entry): the wanted set (sink, selection, local window of
// next_len) against the cache. Cached wanted blocks stay; missing ones take, in ascending
// block order, the slots holding no wanted block: free slots first, then the least
// recently wanted (cache_plan.h is the host model; sink, local window and tail are wanted,
// so never evicted). Missing complete blocks are fetched; the block the step creates gets a
// slot and no fetch; any other missing block is an error.
cudaError_t LaunchCachePlan(const CachePlanArgs& a, cudaStream_t stream);

// done[layer] += 1 (after the layer's fetch, on the copy stream).
cudaError_t LaunchMarkFetched(int32_t* done, int layer, cudaStream_t stream);
// For layers [first, first + count): counts a wait, and a stall when done[l] < issued[l]
// (the fetch not complete when the compute stream got here).
cudaError_t LaunchStallProbe(const int32_t* issued, const int32_t* done, int first, int count,
                             unsigned long long* counters, cudaStream_t stream);
// Spins about `microseconds` (testing: delays the copy stream).
cudaError_t LaunchSpin(int microseconds, cudaStream_t stream);

// Key summary of a block: per channel the minimum and maximum of its 16 keys, bf16
// ([2][head_dim]: min, max), at summary + ((seq * layers + layer) * kv_heads + g) *
// max_blocks + block, in units of 2 * head_dim.
struct KeySummaryArgs {
  const __nv_bfloat16* pool = nullptr;  // blocks read through `table`
  SlotTable table;
  int seq_slot = 0, layers = 0, kv_heads = 0, head_dim = 0, max_blocks = 0;
  int first_block = 0, num_blocks = 0;  // complete blocks to summarise
  __nv_bfloat16* summary = nullptr;
};
cudaError_t LaunchKeySummary(const KeySummaryArgs& a, cudaStream_t stream);

// The calibration row from the key summaries (offload: the cache is not on the GPU). For a
// calibrating batch entry (dense[b] != 0) and every block j < NumBlocks(len) that the
// sparse attention did not list, per query head h of the group:
//   u = scale * (q_h . c_j + R),  c = (min + max) / 2, r = (max - min) / 2,
//   R = sqrt(sum_d (q_hd r_jd)^2)   (estimate kCenterL2: the expected largest logit of 16
//                                    keys whose channels spread independently)
//   R = sum_d |q_hd| r_jd           (kQuestBound: an upper bound of the block's logits)
// and the history gets max_h min(1, exp(u - M_h) / L_h), with M_h, L_h the sparse
// attention's maximum and normaliser (ml, log2 units). Listed blocks keep the exact values
// the attention wrote.
enum class SummaryEstimate : int { kCenterL2 = 0, kQuestBound = 1 };
struct SummaryCalibrationArgs {
  int batch = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0;
  float scale = 0;
  const float* q = nullptr;   // [batch][heads][head_dim]
  const float* ml = nullptr;  // [batch][heads][2] (PagedDecodeArgs::out_ml)
  const int32_t* context_lens = nullptr;
  const int32_t* seq_slots = nullptr;
  const int32_t* dense = nullptr;  // [batch] nonzero: calibrate
  const int32_t* history_row = nullptr;
  BlockLists lists;  // this layer's
  const __nv_bfloat16* summary = nullptr;
  int summary_layers = 0, max_blocks = 0;
  int layer = 0;
  float* history = nullptr;
  int history_layers = 0, history_rows = 0, history_cols = 0;
  SummaryEstimate estimate = SummaryEstimate::kCenterL2;
  int max_cols = 0;  // grid covers blocks [0, max_cols)
};
cudaError_t LaunchSummaryCalibration(const SummaryCalibrationArgs& a, cudaStream_t stream);

// Makes blocks[0..n) resident in cache slots 0..n-1 of every image (layer, KV head) of
// `seq_slot` (where / tags must have been cleared) and, when src_pool is set, copies them
// from src_pool (slots through src_table) into the GPU pool.
struct SeedCacheArgs {
  int seq_slot = 0;
  const int32_t* blocks = nullptr;  // device, n entries
  int n = 0;
  CacheMap cache;
  const __nv_bfloat16* src_pool = nullptr;
  SlotTable src_table;
  __nv_bfloat16* pool = nullptr;
  int head_dim = 0;
};
cudaError_t LaunchSeedCache(const SeedCacheArgs& a, cudaStream_t stream);

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_OFFLOAD_KERNELS_H_
