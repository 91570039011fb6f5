// The options of the CUDA decoder (cuda_decoder.h): placement, batch and context sizes,
// kernel choices, sparse attention, offload and tensor parallelism.
#ifndef APRUNTIME_BACKENDS_CUDA_CUDA_DECODER_OPTIONS_H_
#define APRUNTIME_BACKENDS_CUDA_CUDA_DECODER_OPTIONS_H_

#include <cstdint>
#include <vector>

#include "backends/cuda/gemv.h"
#include "backends/cuda/offload.h"
#include "backends/cuda/offload_kernels.h"
#include "backends/cuda/tensor_parallel.h"
#include "runtime/algorithm_constants.h"

namespace apr::cuda {

// Where a calibration step's full attention row comes from (docs/DESIGN.md section 2).
enum class CalibrationSource {
  kAuto,        // kFullRow when the cache is resident, kKeySummary when it is offloaded
  kFullRow,     // a K-only dense pass over the whole cache (resident only)
  kKeySummary,  // estimated from per-block key summaries kept on the GPU (offload_kernels.h)
};

struct SparseOptions {
  bool enabled = false;
  // Tokens attended per KV head: 64 sink + 64 local + (budget - 128) / 16 predicted blocks.
  int budget_tokens = kDefaultBudgetTokens;
  // Every n-th decode step of a sequence records the full attention row in the history
  // (docs/DESIGN.md "calibration_step"; the step's output still uses the sparse list, as the CPU
  // reference does); 0: never.
  int calibration_step = kDefaultCalibrationStep;
  // The first n layers always attend densely and keep no history (the reference's
  // skip_2layer is 2). With an offloaded cache their whole KV stays in GPU memory
  // (docs/CUDA.md "Dense layers with an offloaded cache").
  int dense_layers = 0;
  CalibrationSource calibration_source = CalibrationSource::kAuto;
  SummaryEstimate summary_estimate = SummaryEstimate::kCenterL2;
  // predictor-hybrid (hybrid_select.h; the CPU policy of that name): when the candidates do
  // not fit, a quarter of the predicted blocks (at least one) are chosen at the step by the
  // current query's Quest bound over the key summaries, the rest by the CNN. Fixed when the
  // decoder is created; resident or local offload (remote: Unimplemented).
  bool hybrid = false;
};

struct CudaDecoderOptions {
  int device = 0;
  int max_sequences = 8;    // live sequences (and the largest decode batch)
  int max_context = 0;      // tokens per sequence; 0: the model's max_position_embeddings
  int64_t pool_groups = 0;  // KV pool size in block groups; 0: max_sequences * max_context / 16
  int prefill_chunk = 512;  // tokens per prefill pass
  // Prefill attention and the history's initial rows on the CUDA cores even for head dims
  // 64 and 128, which otherwise take the tensor-core kernels (prefill_attention_mma.h); for
  // side-by-side measurements.
  bool prefill_cuda_cores = false;
  bool use_graphs = true;   // replay decode steps as CUDA graphs
  bool use_gemv = true;     // the custom GEMV (gemv.h) for decode batches <= gemv_max_tokens
  int gemv_max_tokens = 8;  // larger batches (and prefill) use cuBLAS
  GemvKernel gemv_kernel = GemvKernel::kAuto;  // by batch size (gemv.h)
  bool use_pdl = true;                // GEMVs start loading weights while the previous kernel ends
  bool incremental_predictor = true;  // update the CNN's interior sums instead of recomputing
  int predictor_tiles_per_cta = 0;    // CNN launch shape (predictor_cnn.h); 0: its default
  // For decode batches up to this size, predict layer l's blocks on a second stream as soon
  // as layer l's attention is done, so the (tensor-core) CNN overlaps the later layers'
  // (memory-bound) projections; larger batches predict on the main stream after the last
  // layer. On the H100 the side stream costs the step less at batch 1 and much more at
  // batch 8 (the CNN's CTAs crowd out the GEMVs'; docs/PERFORMANCE.md). 0: never. Resident
  // KV only; offloaded steps: offload.predict_on_side_stream.
  int overlap_predictor_max_batch = 1;
  SparseOptions sparse;
  // Resident (every block in GPU memory) or offloaded to the storage tier, with the GPU
  // slot pool as a block cache filled by cross-token prefetch (docs/CUDA.md "KV offload").
  // Offload needs sparse attention (sparse.enabled; dense layers stay resident); a prompt
  // prefilled in several Prefill calls keeps its blocks in a staging pool on the GPU until
  // its first decode step (no Prefill after it); the predictor's history comes from the last call's
  // last rows, so its last part should hold kHistoryRows tokens (NextPromptPartEnd in
  // runtime/scheduler.h does); offload-remote runs eagerly (no graphs: the host issues the UCX
  // gets of each layer's fetch list).
  KvPlacement placement = KvPlacement::kDevice;
  OffloadOptions offload;
  // Tensor parallelism (tensor_parallel.h, docs/CUDA.md): this process is rank tp.rank of
  // tp.size; Load reads only its shard and Init joins the NCCL group (blocks until every
  // rank has joined). Every rank must then receive the same calls in the same order.
  TensorParallelOptions tp;
  int max_budget_tokens = 0;  // largest budget set_sparse may set later; 0: sparse.budget_tokens
  std::vector<float> predictor_weights;  // PredictorLayout; required when sparse is usable
  // Testing: every device buffer Init allocates is filled with this byte first (-1: left
  // as cudaMalloc returns it). Outputs must not depend on it (no read before a write).
  int debug_fill_byte = -1;
};

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_CUDA_DECODER_OPTIONS_H_
