// The CUDA backend: the Llama decoder on one GPU in bf16 (float32 accumulation and
// residual stream), with the KV cache in a paged slot pool, batched decode, block-sparse
// decode attention chosen by the attention predictor running on the GPU, and the decode
// step replayed as a CUDA graph. Design and limits: docs/CUDA.md.
#ifndef APRUNTIME_RUNTIME_CUDA_CUDA_DECODER_H_
#define APRUNTIME_RUNTIME_CUDA_CUDA_DECODER_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/cuda/cuda_weights.h"
#include "runtime/cuda/device_buffer.h"
#include "runtime/cuda/gemm.h"
#include "runtime/cuda/kv_pool.h"
#include "runtime/decoder.h"

namespace apr::cuda {

struct SparseOptions {
  bool enabled = false;
  // Tokens attended per KV head: 64 sink + 64 local + (budget - 128) / 16 predicted blocks.
  int budget_tokens = 1024;
  // Every n-th decode step of a sequence records the full attention row in the history
  // (DESIGN.md "calibration_step"; the step's output still uses the sparse list, as the CPU
  // reference does); 0: never.
  int calibration_step = 5;
  // The first n layers always attend densely and keep no history (the reference's
  // skip_2layer is 2).
  int dense_layers = 0;
};

struct CudaDecoderOptions {
  int device = 0;
  int max_sequences = 8;    // live sequences (and the largest decode batch)
  int max_context = 0;      // tokens per sequence; 0: the model's max_position_embeddings
  int64_t pool_groups = 0;  // KV pool size in block groups; 0: max_sequences * max_context / 16
  int prefill_chunk = 512;  // tokens per prefill pass
  bool use_graphs = true;   // replay decode steps as CUDA graphs
  bool use_gemv = true;     // the custom GEMV for decode batches <= gemv_max_tokens
  int gemv_max_tokens = 4;  // larger batches use cuBLAS (measured faster at 8, PERFORMANCE.md)
  bool use_pdl = true;      // GEMVs start loading weights while the previous kernel ends
  bool incremental_predictor = true;  // update the CNN's column sums instead of recomputing
  // Predict layer l's blocks on a second stream as soon as layer l's attention is done, so
  // the (tensor-core) CNN may overlap the later layers' (memory-bound) projections. Measured
  // slower on the H100 (the CNN's CTAs crowd out the GEMVs'), hence off.
  bool overlap_predictor = false;
  SparseOptions sparse;
  int max_budget_tokens = 0;  // largest budget set_sparse may set later; 0: sparse.budget_tokens
  std::vector<float> predictor_weights;  // PredictorLayout; required when sparse is usable
};

class CudaDecoder : public Decoder {
 public:
  // Opens a Hugging Face model folder. When options.sparse.enabled and no predictor weights
  // are given, reads <model_dir>/predictor.safetensors.
  static absl::StatusOr<std::unique_ptr<CudaDecoder>> Load(const std::string& model_dir,
                                                           CudaDecoderOptions options);
  static absl::StatusOr<std::unique_ptr<CudaDecoder>> Create(
      std::shared_ptr<const CudaWeights> weights, CudaDecoderOptions options);
  ~CudaDecoder() override;

  const ModelConfig& config() const override { return weights_->config(); }
  std::string device() const override;
  // Sequences must be destroyed before the decoder. `hooks` must be null: this backend
  // selects blocks with its own GPU predictor (options.sparse); a sequence given hooks
  // fails its first Prefill with Unimplemented.
  std::unique_ptr<Sequence> NewSequence(AttentionHooks* hooks = nullptr) override;
  absl::Status Prefill(Sequence& seq, absl::Span<const int32_t> tokens,
                       std::vector<float>* last_logits,
                       std::vector<float>* all_logits = nullptr) override;
  absl::Status DecodeBatch(absl::Span<Sequence* const> seqs, absl::Span<const int32_t> tokens,
                           std::vector<float>* logits) override;

  // --- Benchmark and test entry points. ---
  // Sparse settings for later steps (budget <= max_budget_tokens; sequences created with
  // sparse off have no history and cannot switch it on).
  absl::Status SetSparse(const SparseOptions& sparse);
  const SparseOptions& sparse() const { return opt_.sparse; }
  // Decode projections through the custom GEMV up to `gemv_max_tokens` tokens, cuBLAS above
  // (use_gemv false: cuBLAS always).
  absl::Status SetUseGemv(bool use_gemv, int gemv_max_tokens = 4);
  absl::Status SetUsePdl(bool use_pdl);
  absl::Status SetIncrementalPredictor(bool on);
  absl::Status SetOverlapPredictor(bool on);
  // Gives `seq` (empty) `len` tokens of context without running the model: its blocks keep
  // whatever the pool holds (FillPoolRandom), its history rows are random, and the
  // predictor selects its first blocks. For the benchmark.
  absl::Status FillRandomContext(Sequence& seq, int64_t len, uint64_t seed);
  absl::Status FillPoolRandom(uint64_t seed);
  // One decode step with the logits left on the device; returns once the step is queued.
  // The next call (or Synchronize) waits for it. Events, when given, are recorded around
  // the step's device work.
  absl::Status DecodeStepAsync(absl::Span<Sequence* const> seqs, absl::Span<const int32_t> tokens,
                               cudaEvent_t start = nullptr, cudaEvent_t stop = nullptr);
  // Only the predictor (CNN + top-k) for the batch's next step, queued; for timing it.
  // With `advance_window` the history window first moves by one ring row as a decode step
  // would move it (the row keeps whatever it holds), so the incremental CNN path runs.
  absl::Status PredictAsync(absl::Span<Sequence* const> seqs, bool advance_window = false);
  absl::Status Synchronize();
  cudaStream_t stream() const { return stream_; }
  const CudaWeights& weights() const { return *weights_; }
  int num_sms() const { return num_sms_; }
  // The block lists the last decode step used for `layer` (a sparse layer), per batch
  // entry and KV head: [batch][kv_heads] lists of (block id, first attended token in it).
  using BlockList = std::vector<std::pair<int32_t, int32_t>>;
  absl::StatusOr<std::vector<std::vector<BlockList>>> LastBlockLists(int layer);

 private:
  class CudaSequence;
  struct StepKey {
    int batch = 0, splits_dense = 0, splits_list = 0, predict_cols = 0;
    bool sparse = false, any_dense = false, predict = false;
    auto tie() const {
      return std::tie(batch, splits_dense, splits_list, predict_cols, sparse, any_dense, predict);
    }
    bool operator<(const StepKey& o) const { return tie() < o.tie(); }
  };
  struct Graph {
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
  };

  CudaDecoder(std::shared_ptr<const CudaWeights> weights, CudaDecoderOptions options);
  absl::Status Init();
  void Release(CudaSequence& seq);
  absl::Status Check(bool cond, const char* what);
  // Grows `seq` to hold `len` tokens and uploads new group-table entries.
  absl::Status Reserve(CudaSequence& seq, int64_t len);
  absl::Status Linear(const __nv_bfloat16* w, int m, int k, const __nv_bfloat16* x, int n, float* y,
                      bool accumulate);
  absl::Status GateUpSwiGlu(const CudaLayerWeights& lw, int n);
  absl::Status PrefillChunk(CudaSequence& seq, const int32_t* tokens, int n, int64_t start,
                            bool save_q_from, int64_t save_from_pos);
  absl::Status LogitsRows(const float* x, int rows, float* host_out);
  // CNN + top-k for the batch in d_step_, predicted layers [layer_begin, +layer_count)
  // (layer_count 0: all), on `stream` (default: the main stream).
  absl::Status PredictFor(int batch, int max_cols, int layer_begin = 0, int layer_count = 0,
                          cudaStream_t stream = nullptr);
  void ClearGraphs();
  // Forgets the incremental CNN state of a sequence slot (its history was rewritten).
  absl::Status InvalidateCnnState(int slot);
  // The device work of one decode step, inputs already in d_step_ (capturable).
  absl::Status EnqueueStep(const StepKey& key);
  absl::Status PrepareStep(absl::Span<Sequence* const> seqs, absl::Span<const int32_t> tokens,
                           StepKey* key);
  int SparseLayers() const { return config().num_hidden_layers - opt_.sparse.dense_layers; }
  int KBlocksMax() const;

  std::shared_ptr<const CudaWeights> weights_;
  CudaDecoderOptions opt_;
  int max_blocks_ = 0, num_sms_ = 0, max_splits_ = 0, list_stride_ = 0, sel_stride_ = 0;
  bool sparse_capable_ = false;
  bool step_pending_ = false;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<Gemm> gemm_;
  std::unique_ptr<KvPoolAllocator> alloc_;

  DeviceBuffer<__nv_bfloat16> pool_;
  DeviceBuffer<int32_t> group_table_;
  DeviceBuffer<float> inv_freq_;
  // Activations: rows = max(prefill_chunk, max_sequences).
  int act_rows_ = 0;
  DeviceBuffer<float> x_, qkv_, q_, logits_;
  DeviceBuffer<__nv_bfloat16> xn_, attn_, gu_, act_;
  DeviceBuffer<float> part_o_, part_ml_, block_max_;
  // Per-step inputs: pinned source and device copy, kStepFields arrays of max_sequences.
  PinnedBuffer<int32_t> h_step_;
  DeviceBuffer<int32_t> d_step_;
  PinnedBuffer<int32_t> h_table_;  // staging for group-table entries
  PinnedBuffer<float> h_logits_;
  DeviceBuffer<int32_t> prefill_tokens_, prefill_pos_, prefill_slots_;
  // Sparse state.
  DeviceBuffer<float> predictor_w_, history_, scores_, q_save_;
  DeviceBuffer<int32_t> sel_blocks_, sel_counts_, sel_lens_;
  DeviceBuffer<int32_t> list_counts_, list_blocks_, list_slots_, list_starts_, calib_counts_,
      error_flag_;
  DeviceBuffer<float> cnn_colsum_;
  DeviceBuffer<uint2> cnn_fragments_;
  cudaStream_t side_stream_ = nullptr;
  std::vector<cudaEvent_t> layer_events_;
  cudaEvent_t side_done_ = nullptr;
  DeviceBuffer<int32_t> cnn_count_, cnn_width_;
  std::map<StepKey, Graph> graphs_;
  int last_batch_ = 0;
};

}  // namespace apr::cuda

#endif  // APRUNTIME_RUNTIME_CUDA_CUDA_DECODER_H_
