// The CUDA backend: the Llama decoder on one GPU in bf16 (float32 accumulation and
// residual stream), with the KV cache in a paged slot pool, batched decode, block-sparse
// decode attention chosen by the attention predictor running on the GPU, and the decode
// step replayed as a CUDA graph. Design and limits: docs/CUDA.md.
#ifndef APRUNTIME_BACKENDS_CUDA_CUDA_DECODER_H_
#define APRUNTIME_BACKENDS_CUDA_CUDA_DECODER_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "backends/cuda/block_rules.h"
#include "backends/cuda/cuda_decoder_options.h"
#include "backends/cuda/cuda_weights.h"
#include "backends/cuda/device_buffer.h"
#include "backends/cuda/gemm.h"
#include "backends/cuda/gemv.h"
#include "backends/cuda/gpu_kv_tier.h"
#include "backends/cuda/kv_pool.h"
#include "backends/cuda/offload.h"
#include "backends/cuda/offload_kernels.h"
#include "backends/cuda/paged_decode_attention.h"
#include "backends/cuda/predictor/gpu_predictor.h"
#include "backends/cuda/predictor/predictor_cnn.h"
#include "backends/cuda/rope_append.h"
#include "backends/cuda/rope_tables.h"
#include "backends/cuda/step_graph_cache.h"
#include "backends/cuda/step_inputs.h"
#include "backends/cuda/tensor_parallel.h"
#include "runtime/algorithm_constants.h"
#include "runtime/decoder.h"

namespace apr::cuda {

class CudaDecoder : public Decoder {
 public:
  // Opens a Hugging Face model folder. When options.sparse.enabled and no predictor weights
  // are given, reads <model_dir>/predictor.safetensors.
  static absl::StatusOr<std::unique_ptr<CudaDecoder>> Load(const std::string& model_dir,
                                                           CudaDecoderOptions options);
  static absl::StatusOr<std::unique_ptr<CudaDecoder>> Create(
      std::shared_ptr<const CudaWeights> weights, CudaDecoderOptions options);
  ~CudaDecoder() override;

  // Under tensor parallelism the shard's geometry (ShardConfig): heads, KV heads and
  // intermediate size are this rank's; vocabulary, hidden size, layers and context are the
  // model's.
  const ModelConfig& config() const override { return weights_->config(); }
  std::string device() const override;
  // Sequences must be destroyed before the decoder. `hooks` must be null: this backend
  // selects blocks with its own GPU predictor (options.sparse); a sequence given hooks
  // fails its first Prefill with Unimplemented.
  std::unique_ptr<Sequence> NewSequence(AttentionHooks* hooks = nullptr) override;
  absl::Status Prefill(Sequence& seq, absl::Span<const int32_t> tokens,
                       std::vector<float>* last_logits,
                       std::vector<float>* all_logits = nullptr) override;
  // Offloaded: frees the sequence's staging pool (its prompt is in the tier and the cache).
  void EndPrompt(Sequence& seq) override;
  absl::Status DecodeBatch(absl::Span<Sequence* const> seqs, absl::Span<const int32_t> tokens,
                           std::vector<float>* logits) override;
  // The picks are made on the device (argmax_rows.h); the logits cross to the host only
  // when asked for.
  absl::Status DecodeBatchArgMax(absl::Span<Sequence* const> seqs, absl::Span<const int32_t> tokens,
                                 bool need_logits, std::vector<int32_t>* argmax,
                                 std::vector<float>* logits) override;

  // --- Test and benchmark entry points (the benchmark's switches: CudaDecoderBenchPeer). ---
  // Sparse settings for later steps (budget <= max_budget_tokens; sequences created with
  // sparse off have no history and cannot switch it on).
  absl::Status SetSparse(const SparseOptions& sparse);
  const SparseOptions& sparse() const { return opt_.sparse; }
  // One decode step, its logits copied to a pinned host buffer; returns once the step is
  // queued. The next call (or Synchronize) waits for it. Events, when given, are recorded around
  // the step's device work.
  absl::Status DecodeStepAsync(absl::Span<Sequence* const> seqs, absl::Span<const int32_t> tokens,
                               cudaEvent_t start = nullptr, cudaEvent_t stop = nullptr);
  absl::Status Synchronize();
  cudaStream_t stream() const { return stream_; }
  // The NCCL group under tensor parallelism, else null (the benchmark times its
  // all-reduces alone on stream()).
  TensorParallel* tensor_parallel() const { return tp_.get(); }
  const CudaWeights& weights() const { return *weights_; }
  int num_sms() const { return num_sms_; }
  // The block lists the last decode step used for `layer` (a sparse layer), per batch
  // entry and KV head: [batch][kv_heads] lists of (block id, first attended token in it).
  using BlockList = std::vector<std::pair<int32_t, int32_t>>;
  absl::StatusOr<std::vector<std::vector<BlockList>>> LastBlockLists(int layer);

  // Offload placements: cumulative fetch / prefetch / write-back counters, as of the last
  // completed step (call between steps). Zero counters when resident.
  OffloadStats offload_stats() const;
  KvPlacement placement() const { return opt_.placement; }
  // GPU block cache slots per (sequence, layer, KV head) (offload placements).
  int cache_slots() const { return cache_slots_; }
  // The bytes of complete block `block` of (layer, kv_head) of `seq` ([2][16][head_dim]
  // bf16 bits): from the tier (offload placements, where complete blocks are written) or
  // from GPU memory (the resident pool, or the block cache: NotFound when not cached).
  absl::StatusOr<std::vector<uint16_t>> ReadKvBlock(Sequence& seq, int layer, int kv_head,
                                                    int block, bool from_tier);

 private:
  // The benchmark's switches and random contexts (cuda_decoder_bench_peer.h).
  friend class CudaDecoderBenchPeer;
  // Decode projections through the custom GEMV up to `gemv_max_tokens` tokens, cuBLAS above
  // (use_gemv false: cuBLAS always).
  absl::Status SetUseGemv(bool use_gemv, int gemv_max_tokens = kGemvMaxTokens,
                          GemvKernel kernel = GemvKernel::kAuto);
  absl::Status SetUsePdl(bool use_pdl);
  absl::Status SetIncrementalPredictor(bool on);
  absl::Status SetOverlapPredictorMaxBatch(int max_batch);
  absl::Status SetPredictorTilesPerCta(int tiles);
  // Sparse steps keep the previous selection instead of predicting (no CNN, no top-k): the
  // benchmark's baseline for what the predictor costs inside a step. Resident KV only.
  absl::Status SetSkipPrediction(bool skip);
  // Gives `seq` (empty) `len` tokens of context without running the model: its blocks keep
  // whatever the pool holds (FillPoolRandom), its history rows are random, and the
  // predictor selects its first blocks. For the benchmark.
  absl::Status FillRandomContext(Sequence& seq, int64_t len, uint64_t seed);
  absl::Status FillPoolRandom(uint64_t seed);
  // Only the predictor (CNN + top-k) for the batch's next step, queued; for timing it.
  // With `advance_window` the history window first moves by one ring row as a decode step
  // would move it (the row keeps whatever it holds), so the incremental CNN path runs.
  absl::Status PredictAsync(absl::Span<Sequence* const> seqs, bool advance_window = false);

  class CudaSequence;

  CudaDecoder(std::shared_ptr<const CudaWeights> weights, CudaDecoderOptions options);
  absl::Status Init();
  // Init's parts, in order: the model's geometry, the options (and the sizes they give),
  // device, stream and handles, the dense path's buffers, the sparse path's.
  absl::Status CheckModel() const;
  absl::Status CheckOptions();
  absl::Status CreateHandles();
  absl::Status AllocateBuffers();
  absl::Status AllocateSparse();
  // Makes opt_.device current in the calling thread: entry points may be called from any
  // thread (a worker's RPC threads), and the stream, cuBLAS handle and NCCL communicator
  // belong to that device.
  absl::Status BindDevice();
  void Release(CudaSequence& seq);
  // Grows `seq` to hold `len` tokens and uploads new group-table entries.
  absl::Status Reserve(CudaSequence& seq, int64_t len);
  absl::Status Linear(const __nv_bfloat16* w, int m, int k, const __nv_bfloat16* x, int n, float* y,
                      bool accumulate);
  absl::Status GateUpSwiGlu(const CudaLayerWeights& lw, int n);
  // x_ += in w^T for o_proj and down_proj (the residual add); under tensor parallelism
  // followed by the sum over the ranks (tensor_parallel.h).
  absl::Status ResidualLinear(const __nv_bfloat16* w, int m, int k, const __nv_bfloat16* in, int n);
  // --- A layer's parts, shared by prefill and the decode step (n tokens in x_). ---
  // The slot table of pool_ / the staging pool (group table rows).
  SlotTable PoolTable() const;
  // RMSNorm, then the stacked q/k/v projection into qkv_ (with Qwen2's biases and Qwen3's
  // q/k norms, qkv_prologue.h).
  absl::Status QkvProjection(const CudaLayerWeights& lw, int n);
  // RoPE + KV append of the n tokens at `positions` of `seq_slots` into `pool`, with the
  // decode step's RoPE tables (prefill replaces them: RopeTables::ForPrefill).
  RopeAppendArgs RopeArgs(int n, int layer, const int32_t* positions, const int32_t* seq_slots,
                          __nv_bfloat16* pool) const;
  // o_proj (+ residual), RMSNorm, gate/up with SwiGLU, down_proj (+ residual).
  absl::Status OProjAndMlp(const CudaLayerWeights& lw, int n);

  // --- Prefill (cuda_decoder_prefill.cc). ---
  absl::Status CheckPrefill(const CudaSequence& seq, absl::Span<const int32_t> tokens) const;
  // Room for the prompt's blocks: the group table (resident) or the staging pool (offload).
  absl::Status PreparePrefillPool(CudaSequence& seq, int64_t start, int64_t n);
  // The prompt in chunks of prefill_chunk tokens, with the logits asked for.
  absl::Status PrefillChunks(CudaSequence& seq, absl::Span<const int32_t> tokens, int64_t save_from,
                             std::vector<float>* last_logits, std::vector<float>* all_logits);
  // `pass_end`: where the whole prompt part ends (its RoPE tables are chosen by it).
  absl::Status PrefillChunk(CudaSequence& seq, const int32_t* tokens, int n, int64_t start,
                            int64_t pass_end, bool save_q_from, int64_t save_from_pos);
  absl::Status LogitsRows(const float* x, int rows, float* host_out);
  // The history's first rows from the last hist_rows prompt tokens (saved from position
  // save_from), the key summaries, and the first decode step's selection.
  absl::Status HistoryAfterPrefill(CudaSequence& seq, int64_t start, int64_t hist_rows,
                                   int64_t save_from);
  absl::Status PrefillKeySummary(const CudaSequence& seq, int64_t start);
  // The predictor's geometry and the step inputs it reads (d_step_, error_flag_).
  GpuPredictorShape PredictorShape() const;
  PredictInputs PredictorInputs() const;
  // A predictor launch for the batch in d_step_ at the current budget: predicted layers
  // [layer_begin, +layer_count) (layer_count 0: all). `recompute`: the CNN recomputes
  // every column (no incremental state), which picks its launch shape.
  PredictLaunch PredictArgs(int batch, int max_cols, bool recompute, int layer_begin = 0,
                            int layer_count = 0) const;
  // Layers per CNN launch on the side stream. Measured at 128K batch 1 on the H100, the
  // predictor's share of the step: 4.8-5.1% at 1, 4.4% at 2, 5.6% at 3 (docs/PERFORMANCE.md).
  static constexpr int kOverlapCnnLayers = 2;
  // Whether a resident step of `batch` sequences predicts each layer on the side stream
  // (offloaded steps predict per layer group in PrefetchLayers instead).
  bool OverlapPredictor(int batch) const {
    return !offload_ && batch <= opt_.overlap_predictor_max_batch;
  }
  // Whether decode steps are captured and replayed as CUDA graphs (a remote tier's host
  // takes part in every step: eager).
  bool ReplaysSteps() const { return opt_.use_graphs && (tier_ == nullptr || tier_->replayable()); }
  // --- The decode step (cuda_decoder_step.cc). ---
  // The batch checked, the step's inputs staged in h_step_, the step's key.
  absl::Status PrepareStep(absl::Span<Sequence* const> seqs, absl::Span<const int32_t> tokens,
                           StepKey* key);
  absl::Status CheckStepSequences(absl::Span<Sequence* const> seqs,
                                  absl::Span<const int32_t> tokens, bool sparse) const;
  // DecodeStepAsync, with the [batch][vocab] logits copied to h_logits_ or not (the
  // greedy picks always reach h_argmax_).
  absl::Status EnqueueDecodeStep(absl::Span<Sequence* const> seqs, absl::Span<const int32_t> tokens,
                                 bool copy_logits, cudaEvent_t start, cudaEvent_t stop);
  // The device work of one decode step, inputs already in h_step_ (capturable).
  absl::Status EnqueueStep(const StepKey& key);
  // The first layer that attends over block lists (the number of layers when dense).
  int FirstListedLayer(const StepKey& key) const;
  absl::Status EnqueueBuildLists(const StepKey& key);
  BuildListsArgs ListsArgs(const StepKey& key) const;
  RopeAppendArgs StepRopeArgs(int batch, int layer) const;
  PagedDecodeArgs DecodeAttentionArgs(const StepKey& key, int l) const;
  absl::Status EnqueueStepAttention(const StepKey& key, int l);
  SummaryCalibrationArgs SummaryCalibrationFor(const StepKey& key, int l,
                                               const PagedDecodeArgs& pa) const;
  absl::Status PredictAfterLayer(const StepKey& key, int l, bool eager);
  absl::Status EnqueueStepEnd(const StepKey& key, bool eager);
  int SparseLayers() const { return config().num_hidden_layers - opt_.sparse.dense_layers; }
  int KBlocksMax() const;

  // --- predictor-hybrid (cuda_decoder_hybrid.cc). ---
  absl::Status CheckHybrid() const;
  absl::Status AllocateHybrid();
  // Query slots per (sequence, layer, KV head): the largest budget's query blocks.
  int QueryStride() const { return HybridQueryBlocks(KBlocksMax()); }
  // Offloaded: the pool slots past the cache that hold the query's uncached blocks.
  int64_t QueryAreaSlots() const;
  // After sparse layer l's RoPE: the query's blocks, (offloaded) their fetch, and the
  // layer's list rebuilt with them.
  absl::Status EnqueueQueryBlocks(const StepKey& key, int l);

  // --- Dense layers with an offloaded cache (cuda_decoder_dense_layers.cc). ---
  // Whether layer l attends densely over the dense layers' resident pool.
  bool DenseLayerResident(int l) const { return offload_ && l < opt_.sparse.dense_layers; }
  absl::Status AllocateDenseLayerPool();
  SlotTable DenseLayerTable() const;
  // After an offloaded Prefill of the part that began at `start`: its dense layers' blocks
  // from the staging pool into their resident pool.
  absl::Status KeepDenseLayersResident(CudaSequence& seq, int64_t start);
  // In a decode step, after dense layer `layer`'s RoPE append: a completed block to the tier.
  absl::Status DenseLayerWriteBack(int batch, int layer);
  absl::StatusOr<std::vector<uint16_t>> ReadDenseLayerBlock(const CudaSequence& seq, int layer,
                                                            int kv_head, int block) const;

  // --- Offload (cuda_decoder_offload.cc; the tier side: cuda_decoder_tier.cc). ---
  // The tier connected, the block cache's buffers (wb_area: the write-back slots the tier
  // asks for), then the tier bound to them.
  absl::Status InitOffload();
  absl::Status AllocateOffloadBuffers(int64_t wb_area);
  GpuCacheBinding CacheBinding() const;
  void ShutdownOffload();
  CacheMap Cache() const;
  int64_t BlockBytes() const;
  // Before layer l's attention: wait for the fetch planned for this step (eager: per layer;
  // graphs wait at the end of the previous step).
  absl::Status WaitLayerFetch(int layer, bool eager);
  // After the attention of layer first + count - 1: predict layers [first, first + count)
  // for the next step, plan their cache, start their fetches (and the write-back of a
  // filled block) on the copy stream.
  absl::Status PrefetchLayers(int batch, int first, int count, const StepKey& key, bool eager);
  // The plan of layers [first, first + count) for the batch in d_step_: selection, cache,
  // tier and per-layer fetch lists (no write-back; PrefetchLayers adds it).
  CachePlanArgs PlanArgs(int batch, int first, int count) const;
  // After the last layer (graphs): count stalls and join the copy stream.
  absl::Status FinishStepFetches(bool eager);
  // The tier side of a sequence: created, its complete blocks written (Prefill) or given
  // slots (FillRandomContext), its cache seeded and its first step's blocks fetched.
  // After an offloaded prefill into `staging` (the prompt's blocks through the group table).
  absl::Status OffloadAfterPrefill(CudaSequence& seq, const __nv_bfloat16* staging);
  // FillRandomContext: the tier side (slots for every complete block), then, once the
  // history is made and the first selection predicted, the cache seeded and fetched.
  absl::Status OffloadFillRandomContext(CudaSequence& seq, int64_t len);
  absl::Status OffloadFillRandomContextFinish(CudaSequence& seq);
  // Waits for everything the offload path has in flight (compute stream, the tier's copies).
  absl::Status SyncOffload();
  absl::Status CreateTierSequence(CudaSequence& seq);
  // Tier slots of blocks [first, full) of every (layer, KV head) of `seq`, block-major
  // ([block][layers][kv_heads]); `from_staging` (Prefill) writes their bytes from the staging
  // pool, else (FillRandomContext) only allocates.
  absl::Status WriteOrAllocateTierBlocks(CudaSequence& seq, int first, int full,
                                         const __nv_bfloat16* staging);
  absl::Status SetTierSlots(CudaSequence& seq, int first, int full,
                            const std::vector<uint32_t>& slots);
  // Makes `seq`'s staging pool hold at least `blocks` blocks, keeping what it holds.
  absl::Status GrowStaging(CudaSequence& seq, int blocks);
  void ReleaseStaging(CudaSequence& seq);
  // Clears the sequence's cache maps and makes `blocks` resident (copied from `src` through
  // the group table when given).
  absl::Status SeedCache(CudaSequence& seq, const std::vector<int32_t>& blocks,
                         const __nv_bfloat16* src);
  // Plans and fetches every layer's first-step blocks (the selection is made), synchronously.
  absl::Status InitialFetch(CudaSequence& seq);
  absl::Status PrepareOffloadStep(absl::Span<Sequence* const> seqs);
  absl::Status AfterOffloadStep();
  // The sequence's write-backs stored by the host up to `up_to_step`, counted.
  absl::Status CompleteWriteBacks(CudaSequence& seq, int64_t up_to_step);
  void ReleaseOffload(CudaSequence& seq);

  std::shared_ptr<const CudaWeights> weights_;
  CudaDecoderOptions opt_;
  int max_blocks_ = 0, num_sms_ = 0, max_splits_ = 0, list_stride_ = 0;
  bool sparse_capable_ = false;
  bool skip_prediction_ = false;  // SetSkipPrediction
  bool step_pending_ = false;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<Gemm> gemm_;
  std::unique_ptr<KvPoolAllocator> alloc_;
  std::unique_ptr<TensorParallel> tp_;  // null without tensor parallelism

  DeviceBuffer<__nv_bfloat16> pool_;
  DeviceBuffer<int32_t> group_table_;
  RopeTables rope_;
  // Activations: rows = max(prefill_chunk, max_sequences).
  int act_rows_ = 0;
  DeviceBuffer<float> x_, qkv_, q_, logits_;
  DeviceBuffer<__nv_bfloat16> xn_, attn_, gu_, act_;
  DeviceBuffer<float> part_o_, part_ml_, block_max_;
  // Per-step inputs (step_inputs.h): pinned source and device copy.
  PinnedBuffer<int32_t> h_step_;
  DeviceBuffer<int32_t> d_step_;
  StepInputs<int32_t> HostStep() {
    return StepInputs<int32_t>::Over(h_step_.get(), opt_.max_sequences);
  }
  StepInputs<const int32_t> DeviceStep() const {
    return StepInputs<const int32_t>::Over(d_step_.get(), opt_.max_sequences);
  }
  PinnedBuffer<int32_t> h_table_;  // staging for group-table entries
  PinnedBuffer<float> h_logits_;
  // Each decode row's greedy pick, on the device and its host copy.
  DeviceBuffer<int32_t> d_argmax_;
  PinnedBuffer<int32_t> h_argmax_;
  DeviceBuffer<int32_t> prefill_tokens_, prefill_pos_, prefill_slots_;
  // Sparse state: the predictor (history, CNN, selection; null without sparse support)
  // and the step's block lists built from its selection.
  std::unique_ptr<GpuPredictor> predictor_;
  DeviceBuffer<int32_t> list_counts_, list_blocks_, list_slots_, list_starts_, calib_counts_,
      error_flag_;
  StepGraphCache graphs_;  // decode steps replayed (use_graphs, not remote)
  int last_batch_ = 0;
  // Key summaries and the sparse attention's (max, normaliser) for the key-summary
  // calibration.
  bool summary_calibration_ = false;
  bool key_summaries_ = false;  // kept for the calibration or predictor-hybrid
  // predictor-hybrid: the query's blocks of the current layer per batch row, their pool
  // slots (offloaded: -1 when cached) and the fetch list of the uncached ones.
  DeviceBuffer<int32_t> query_blocks_, query_counts_, query_slots_, query_fetch_count_;
  DeviceBuffer<uint32_t> query_fetch_src_, query_fetch_dst_;
  DeviceBuffer<__nv_bfloat16> key_summary_;
  DeviceBuffer<float> attn_ml_;
  // Offloaded with dense layers: their whole KV, resident ([sequence slots][max_blocks]
  // groups of dense_layers * kv_heads slots; dense_table_ maps slot s's block b to group
  // s * max_blocks + b).
  DeviceBuffer<__nv_bfloat16> dense_pool_;
  DeviceBuffer<int32_t> dense_table_;
  // The pool prefill writes into: pool_ when resident, a staging pool when offloaded.
  __nv_bfloat16* prefill_pool_ = nullptr;

  // Offload state: the block cache (maps, plan lists, counters) and the tier behind it.
  bool offload_ = false;
  int cache_slots_ = 0;
  int64_t cache_pool_slots_ = 0;  // images * cache_slots_; the tier's write-back area follows
  int max_fetch_ = 0, max_wb_ = 0;
  int64_t step_counter_ = 0;
  std::unique_ptr<GpuKvTier> tier_;  // null when resident
  DeviceBuffer<int32_t> cache_where_, cache_tags_, cache_stamps_, plan_scratch_, issued_, done_;
  DeviceBuffer<uint32_t> tier_table_, fetch_src_, fetch_dst_, wb_src_, wb_dst_;
  DeviceBuffer<int32_t> fetch_count_, wb_count_;
  DeviceBuffer<unsigned long long> counters_;
  PinnedBuffer<unsigned long long> h_counters_;
  // The step's write-back slots per (batch row, layer, KV head): host staging, device copy.
  PinnedBuffer<uint32_t> h_wb_;
  DeviceBuffer<uint32_t> d_wb_;
  OffloadStats host_stats_;  // the parts counted on the host
};

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_CUDA_DECODER_H_
