// Block selection on the GPU: top-k of the predictor's scores per (sequence, layer, KV
// head), then the per-step block lists [sink, selected, local window] with their slots.
//
// Rules (block_rules.h; docs/PREDICTOR.md): the k highest scores win; equal scores are
// broken towards the lower block index; -0.0 equals +0.0; a NaN score ranks below every
// number. The selection is written ascending by block id. When the candidates fit every
// one is selected; when more than k but fewer than 3 remain (no CNN), the lowest k.
#ifndef APRUNTIME_BACKENDS_CUDA_PREDICTOR_TOPK_SELECT_H_
#define APRUNTIME_BACKENDS_CUDA_PREDICTOR_TOPK_SELECT_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "backends/cuda/paged_decode_attention.h"
#include "backends/cuda/rope_append.h"

namespace apr::cuda {

// Per sequence slot, the selection made for its next step:
// [sequence slots][num_layers][kv_heads][stride] block ids, a count and the context
// length it was made for.
struct Selection {
  int32_t* blocks = nullptr;
  int32_t* counts = nullptr;                     // [sequence slots][num_layers][kv_heads]
  int32_t* lens = nullptr;                       // [sequence slots]
  int num_layers = 0, kv_heads = 0, stride = 0;  // stride >= max(k, 2)
};

struct TopkArgs {
  int batch = 0;
  int num_layers = 0, num_kv_heads = 0;  // the predicted layers, as in PredictorCnnArgs
  int layer_begin = 0, layer_count = 0;  // the layers this launch selects for (0: all)
  const int32_t* next_lens = nullptr;    // [batch]
  const int32_t* seq_slots = nullptr;    // [batch]
  const float* scores = nullptr;         // [batch][num_layers][kv_heads][score_cols]
  int score_cols = 0;
  int k_blocks = 0;
  // predictor-hybrid: when the candidates do not fit in k_blocks, the CNN chooses only
  // HybridCnnBlocks(k_blocks) (block_rules.h); the step adds the query's blocks
  // (hybrid_select.h). 0: the CNN chooses all k_blocks.
  int query_blocks = 0;
  Selection out;
  int32_t* error = nullptr;
};

// Candidates per image are limited to kTopkMaxCandidates (139K tokens of context); an
// image with more sets *error (when given) and selects nothing.
constexpr int kTopkMaxCandidates = 8704;
cudaError_t LaunchTopkSelect(TopkArgs a, cudaStream_t stream);

struct BuildListsArgs {
  int batch = 0;
  int first_layer = 0, num_layers = 0, num_kv_heads = 0;  // the sparse layers
  // The lists this launch builds: sparse layers [layer_begin, layer_begin + layer_count)
  // (relative to first_layer); layer_count 0: all.
  int layer_begin = 0, layer_count = 0;
  const int32_t* context_lens = nullptr;  // [batch] this step's lengths
  const int32_t* seq_slots = nullptr;     // [batch]
  // [batch] nonzero: a calibration step (the history gets the full row); may be null.
  const int32_t* dense = nullptr;
  Selection sel;  // must have been made for context_lens
  // Optional, with layer_count 1: a fourth ascending run merged into the list, per batch
  // row (b * kv_heads + g): extra_counts[row] blocks at extra_blocks + row * extra_stride
  // (the query's blocks of predictor-hybrid). extra_slots, when set, gives each one's pool
  // slot (-1: resolved as the others are).
  const int32_t* extra_blocks = nullptr;
  const int32_t* extra_counts = nullptr;
  const int32_t* extra_slots = nullptr;
  int extra_stride = 0;
  // The step's first launch checked that `sel` was made for context_lens; a later one (a
  // layer rebuilt inside the step) skips it: offloaded, a layer group's prediction for the
  // next step already dated the selection, though a later group's blocks are still this
  // step's until its own prediction.
  bool sel_checked = false;
  SlotTable table;  // resolves block ids to slots (resident pool)
  // Offload placements: when cache.where is set, slots come from the GPU block cache
  // instead (rope_append.h CacheMap; its layers are the model's, first_layer + li); a
  // listed block that is not cached sets *error (never read from a wrong slot).
  CacheMap cache;
  // Output, per sparse layer li, in BlockLists layout: counts + li * rows_per_layer,
  // blocks/slots/starts + li * rows_per_layer * list_stride (rows_per_layer >=
  // batch * kv_heads).
  int rows_per_layer = 0;
  int32_t* counts = nullptr;
  int32_t* blocks = nullptr;
  int32_t* slots = nullptr;
  int32_t* starts = nullptr;
  int list_stride = 0;
  // Optional, [batch * kv_heads]: -1 for the rows of calibrating sequences, 0 otherwise
  // (the counts of the history-only dense pass, paged_decode_attention.h).
  int32_t* calib_counts = nullptr;
  int32_t* error = nullptr;  // set to 1 when a selection was made for another length
};

cudaError_t LaunchBuildLists(const BuildListsArgs& a, cudaStream_t stream);

// Dates each batch sequence's selection for next_lens[b] without predicting: the blocks
// chosen for the previous length stay (still candidates or, once in the local window,
// merged with it). Only for measuring a step without the predictor
// (CudaDecoder::SetSkipPrediction).
cudaError_t LaunchReuseSelection(Selection sel, const int32_t* seq_slots, const int32_t* next_lens,
                                 int batch, cudaStream_t stream);

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_PREDICTOR_TOPK_SELECT_H_
