#include "backends/cuda/cuda_decoder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "backends/cuda/block_rules.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_decoder_internal.h"
#include "backends/cuda/fill.h"
#include "backends/cuda/gemv.h"
#include "backends/cuda/model_support.h"
#include "backends/cuda/norm_ops.h"
#include "backends/cuda/paged_decode_attention.h"
#include "backends/cuda/predictor/predictor_cnn.h"
#include "backends/cuda/predictor/predictor_weights.h"
#include "backends/cuda/predictor/topk_select.h"
#include "backends/cuda/prefill_attention.h"
#include "backends/cuda/qkv_prologue.h"
#include "backends/cuda/rope_append.h"
#include "runtime/checkpoint.h"

namespace apr::cuda {

CudaDecoder::CudaDecoder(std::shared_ptr<const CudaWeights> weights, CudaDecoderOptions options)
    : weights_(std::move(weights)), opt_(std::move(options)) {}

CudaDecoder::~CudaDecoder() {
  cudaSetDevice(opt_.device);
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  ShutdownOffload();
  graphs_.Clear();
  gemm_.reset();
  predictor_.reset();  // its side stream and events
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

std::string CudaDecoder::device() const { return absl::StrCat("cuda:", opt_.device); }

absl::StatusOr<std::unique_ptr<CudaDecoder>> CudaDecoder::Load(const std::string& model_dir,
                                                               CudaDecoderOptions options) {
  auto ckpt = Checkpoint::Open(model_dir);
  if (!ckpt.ok()) return ckpt.status();
  APR_CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device));
  auto w = CudaWeights::FromCheckpoint(**ckpt, options.tp.rank, options.tp.size);
  if (!w.ok()) return w.status();
  if (options.sparse.enabled && options.predictor_weights.empty()) {
    auto p = LoadPredictorWeights(model_dir + "/predictor.safetensors");
    if (!p.ok()) return p.status();
    options.predictor_weights = *std::move(p);
  }
  return Create(std::shared_ptr<const CudaWeights>(std::move(*w)), std::move(options));
}

absl::StatusOr<std::unique_ptr<CudaDecoder>> CudaDecoder::Create(
    std::shared_ptr<const CudaWeights> weights, CudaDecoderOptions options) {
  std::unique_ptr<CudaDecoder> d(new CudaDecoder(std::move(weights), std::move(options)));
  APR_RETURN_IF_ERROR(d->Init());
  return d;
}

int CudaDecoder::KBlocksMax() const {
  return PredictedBlocks(std::max(opt_.max_budget_tokens, opt_.sparse.budget_tokens));
}

absl::Status CudaDecoder::Init() {
  APR_RETURN_IF_ERROR(CheckModel());
  APR_RETURN_IF_ERROR(CheckOptions());
  APR_RETURN_IF_ERROR(CreateHandles());
  APR_RETURN_IF_ERROR(AllocateBuffers());
  if (sparse_capable_) APR_RETURN_IF_ERROR(AllocateSparse());
  if (offload_) APR_RETURN_IF_ERROR(InitOffload());
  // Offloaded dense layers keep their whole KV on the GPU (cuda_decoder_dense_layers.cc).
  if (offload_ && opt_.sparse.dense_layers > 0) APR_RETURN_IF_ERROR(AllocateDenseLayerPool());
  APR_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return absl::OkStatus();
}

absl::Status CudaDecoder::CheckModel() const {
  const ModelConfig& c = config();
  APR_RETURN_IF_ERROR(CheckCudaSupportsModel(c));
  const int hd = c.head_dim, nh = c.num_attention_heads, nkv = c.num_key_value_heads;
  const int H = c.hidden_size, I = c.intermediate_size;
  const int group = nh / nkv;
  if (!PagedDecodeSupported(hd, group) || !PrefillAttentionSupported(hd)) {
    return absl::UnimplementedError(
        absl::StrCat("the CUDA backend supports head_dim 16/32/64/128 "
                     "and 1-4 (or 8 at head_dim <= 64) query heads per "
                     "KV head; this model has head_dim ",
                     hd, " and ", group));
  }
  if (H % 8 != 0 || I % 8 != 0 || (nh * hd) % 8 != 0) {
    return absl::UnimplementedError(
        "hidden_size, intermediate_size and heads * head_dim must be "
        "multiples of 8");
  }
  return absl::OkStatus();
}

absl::Status CudaDecoder::CheckOptions() {
  const ModelConfig& c = config();
  const int L = c.num_hidden_layers;
  if (opt_.max_sequences < 1 || opt_.prefill_chunk < 1)
    return absl::InvalidArgumentError("max_sequences and prefill_chunk must be positive");
  if (opt_.placement == KvPlacement::kAuto) {
    return absl::InvalidArgumentError(
        "KvPlacement::kAuto is a worker's choice: resolve it before creating the decoder "
        "(cluster/devices.h ResolveAutoPlacement)");
  }
  APR_RETURN_IF_ERROR(GpuPredictor::CheckTilesPerCta(opt_.predictor_tiles_per_cta));
  if (opt_.max_context <= 0) opt_.max_context = static_cast<int>(c.max_position_embeddings);
  opt_.max_context = std::min<int64_t>(opt_.max_context, c.max_position_embeddings);
  max_blocks_ = NumBlocks(opt_.max_context);
  if (opt_.pool_groups <= 0) opt_.pool_groups = int64_t{opt_.max_sequences} * max_blocks_;
  sparse_capable_ = opt_.sparse.enabled || opt_.max_budget_tokens > 0;
  if (sparse_capable_) {
    APR_RETURN_IF_ERROR(CheckCudaSupportsSparse(c));
    if (opt_.predictor_weights.size() != PredictorLayout::kSize)
      return absl::InvalidArgumentError("sparse attention needs the predictor's weights");
    if (opt_.sparse.dense_layers < 0 || opt_.sparse.dense_layers >= L)
      return absl::InvalidArgumentError("sparse.dense_layers must be in [0, num_hidden_layers)");
    if (NumCandidates(opt_.max_context + 1) > kTopkMaxCandidates)
      return absl::UnimplementedError(absl::StrCat("sparse attention supports contexts up to ",
                                                   kTopkMaxCandidates * kBlockTokens, " tokens"));
    if (PredictedBlocks(opt_.sparse.budget_tokens) < 1)
      return absl::InvalidArgumentError("the sparse budget must exceed 128 tokens");
  }
  offload_ = opt_.placement != KvPlacement::kDevice;
  const CalibrationSource cal_source = opt_.sparse.calibration_source;
  if (offload_) {
    if (!opt_.sparse.enabled)
      return absl::InvalidArgumentError(
          "an offloaded KV cache needs sparse attention (sparse.enabled): only the selected "
          "blocks are on the GPU");
    if (cal_source == CalibrationSource::kFullRow && opt_.sparse.calibration_step > 0)
      return absl::InvalidArgumentError(
          "full-row calibration reads every block of the cache: with an offloaded cache it "
          "would move the whole cache across PCIe; use CalibrationSource::kKeySummary");
  }
  summary_calibration_ = sparse_capable_ && (cal_source == CalibrationSource::kKeySummary ||
                                             (cal_source == CalibrationSource::kAuto && offload_));
  APR_RETURN_IF_ERROR(CheckHybrid());
  key_summaries_ = summary_calibration_ || opt_.sparse.hybrid;
  return absl::OkStatus();
}

absl::Status CudaDecoder::CreateHandles() {
  APR_CUDA_RETURN_IF_ERROR(cudaSetDevice(opt_.device));
  if (opt_.tp.size != weights_->tp_size() ||
      (opt_.tp.size > 1 && opt_.tp.rank != weights_->tp_rank()))
    return absl::InvalidArgumentError(
        absl::StrCat("the weights are shard ", weights_->tp_rank(), " of ", weights_->tp_size(),
                     "; the options ask for rank ", opt_.tp.rank, " of ", opt_.tp.size));
  if (opt_.tp.size > 1) {
    auto tp = TensorParallel::Create(opt_.tp, opt_.device);
    if (!tp.ok()) return tp.status();
    tp_ = *std::move(tp);
  }
  cudaDeviceProp prop;
  APR_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, opt_.device));
  num_sms_ = prop.multiProcessorCount;
  max_splits_ = kMaxSplits;
  APR_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  auto gemm = Gemm::Create(stream_);
  if (!gemm.ok()) return gemm.status();
  gemm_ = *std::move(gemm);
  if (offload_) opt_.pool_groups = 0;  // the slot pool is the block cache (InitOffload)
  alloc_ = std::make_unique<KvPoolAllocator>(opt_.pool_groups, opt_.max_sequences, max_blocks_);
  return absl::OkStatus();
}

// The KV pool (resident), the group table, RoPE, activations and the step's inputs.
absl::Status CudaDecoder::AllocateBuffers() {
  const int fill = opt_.debug_fill_byte;
  const ModelConfig& c = config();
  const int hd = c.head_dim, nh = c.num_attention_heads, nkv = c.num_key_value_heads;
  const int L = c.num_hidden_layers, H = c.hidden_size, I = c.intermediate_size;
  const int64_t slot_elems = 2 * kBlockTokens * hd;
  if (!offload_) {
    APR_RETURN_IF_ERROR(Alloc(fill, &pool_, opt_.pool_groups * L * nkv * slot_elems));
    prefill_pool_ = pool_.get();
  }
  APR_RETURN_IF_ERROR(Alloc(fill, &group_table_, int64_t{opt_.max_sequences} * max_blocks_));
  APR_CUDA_RETURN_IF_ERROR(cudaMemset(group_table_.get(), 0, group_table_.bytes()));
  APR_RETURN_IF_ERROR(rope_.Init(c, fill));

  act_rows_ = std::max(opt_.prefill_chunk, opt_.max_sequences);
  const int qkv = (nh + 2 * nkv) * hd;
  APR_RETURN_IF_ERROR(Alloc(fill, &x_, int64_t{act_rows_} * H));
  APR_RETURN_IF_ERROR(Alloc(fill, &qkv_, int64_t{act_rows_} * qkv));
  APR_RETURN_IF_ERROR(Alloc(fill, &q_, int64_t{act_rows_} * nh * hd));
  APR_RETURN_IF_ERROR(Alloc(fill, &xn_, int64_t{act_rows_} * H));
  APR_RETURN_IF_ERROR(Alloc(fill, &attn_, int64_t{act_rows_} * nh * hd));
  APR_RETURN_IF_ERROR(Alloc(fill, &gu_, int64_t{act_rows_} * 2 * I));
  APR_RETURN_IF_ERROR(Alloc(fill, &act_, int64_t{act_rows_} * I));
  APR_RETURN_IF_ERROR(
      Alloc(fill, &logits_, int64_t{std::max(opt_.max_sequences, 16)} * c.vocab_size));
  APR_RETURN_IF_ERROR(Alloc(fill, &part_o_, int64_t{opt_.max_sequences} * nh * max_splits_ * hd));
  APR_RETURN_IF_ERROR(Alloc(fill, &part_ml_, int64_t{opt_.max_sequences} * nh * max_splits_ * 2));
  const int64_t step_elems = StepInputs<int32_t>::Elements(opt_.max_sequences);
  APR_RETURN_IF_ERROR(AllocPinned(&h_step_, step_elems));
  APR_RETURN_IF_ERROR(Alloc(fill, &d_step_, step_elems));
  std::fill(h_step_.get(), h_step_.get() + h_step_.size(), 0);
  APR_RETURN_IF_ERROR(AllocPinned(&h_table_, max_blocks_ + opt_.max_sequences));
  APR_RETURN_IF_ERROR(AllocPinned(&h_logits_, int64_t{opt_.max_sequences} * c.vocab_size));
  APR_RETURN_IF_ERROR(Alloc(fill, &d_argmax_, opt_.max_sequences));
  APR_RETURN_IF_ERROR(AllocPinned(&h_argmax_, opt_.max_sequences));
  APR_RETURN_IF_ERROR(Alloc(fill, &prefill_tokens_, act_rows_));
  APR_RETURN_IF_ERROR(Alloc(fill, &prefill_pos_, act_rows_));
  APR_RETURN_IF_ERROR(Alloc(fill, &prefill_slots_, act_rows_));
  APR_RETURN_IF_ERROR(Alloc(fill, &error_flag_, 1));
  APR_CUDA_RETURN_IF_ERROR(cudaMemset(error_flag_.get(), 0, sizeof(int32_t)));
  return absl::OkStatus();
}

// The attention's block maxima, the predictor, the block lists, the key summaries.
absl::Status CudaDecoder::AllocateSparse() {
  const int fill = opt_.debug_fill_byte;
  const ModelConfig& c = config();
  const int hd = c.head_dim, nh = c.num_attention_heads, nkv = c.num_key_value_heads;
  const int L = c.num_hidden_layers;
  const int group = nh / nkv;
  const int ls = SparseLayers();
  APR_RETURN_IF_ERROR(
      Alloc(fill, &block_max_, int64_t{opt_.max_sequences} * nkv * max_blocks_ * group));
  auto predictor =
      GpuPredictor::Create(PredictorShape(), PredictorInputs(), opt_.predictor_weights,
                           opt_.incremental_predictor, opt_.predictor_tiles_per_cta, fill, stream_);
  if (!predictor.ok()) return predictor.status();
  predictor_ = *std::move(predictor);
  list_stride_ = MaxListLength(KBlocksMax());
  APR_RETURN_IF_ERROR(Alloc(fill, &list_counts_, int64_t{ls} * opt_.max_sequences * nkv));
  APR_RETURN_IF_ERROR(
      Alloc(fill, &list_blocks_, int64_t{ls} * opt_.max_sequences * nkv * list_stride_));
  APR_RETURN_IF_ERROR(
      Alloc(fill, &list_slots_, int64_t{ls} * opt_.max_sequences * nkv * list_stride_));
  APR_RETURN_IF_ERROR(
      Alloc(fill, &list_starts_, int64_t{ls} * opt_.max_sequences * nkv * list_stride_));
  APR_RETURN_IF_ERROR(Alloc(fill, &calib_counts_, int64_t{opt_.max_sequences} * nkv));
  if (key_summaries_) {
    APR_RETURN_IF_ERROR(
        Alloc(fill, &key_summary_, int64_t{opt_.max_sequences} * L * nkv * max_blocks_ * 2 * hd));
  }
  if (summary_calibration_)
    APR_RETURN_IF_ERROR(Alloc(fill, &attn_ml_, int64_t{opt_.max_sequences} * nh * 2));
  if (opt_.sparse.hybrid) APR_RETURN_IF_ERROR(AllocateHybrid());
  return absl::OkStatus();
}

std::unique_ptr<Sequence> CudaDecoder::NewSequence(AttentionHooks* hooks) {
  absl::StatusOr<int> slot = alloc_->AcquireSequence();
  return std::make_unique<CudaSequence>(this, slot.ok() ? *slot : -1, hooks);
}

void CudaDecoder::Release(CudaSequence& seq) {
  if (offload_) {
    BindDevice().IgnoreError();  // the sequence may be freed on any thread
    ReleaseOffload(seq);
  }
  alloc_->ReleaseSequence(seq.slot, seq.groups);
  seq.slot = -1;
}

absl::Status CudaDecoder::Reserve(CudaSequence& seq, int64_t len) {
  const size_t old = seq.groups.size();
  APR_RETURN_IF_ERROR(alloc_->Grow(seq.groups, NumBlocks(static_cast<int>(len))));
  const size_t added = seq.groups.size() - old;
  if (added == 0) return absl::OkStatus();
  // Staging is reused only after the stream was synchronised (every step and prefill ends
  // with one), so the pending copies of earlier calls are complete.
  APR_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  std::memcpy(h_table_.get(), seq.groups.data() + old, added * sizeof(int32_t));
  APR_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(group_table_.get() + int64_t{seq.slot} * max_blocks_ + old, h_table_.get(),
                      added * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
  APR_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::Status CudaDecoder::Linear(const __nv_bfloat16* w, int m, int k, const __nv_bfloat16* x,
                                 int n, float* y, bool accumulate) {
  if (opt_.use_gemv && n <= std::min(opt_.gemv_max_tokens, kGemvMaxTokens)) {
    GemvArgs a;
    a.w = w;
    a.x = x;
    a.m = m;
    a.k = k;
    a.n = n;
    a.epilogue = accumulate ? GemvEpilogue::kAccumulate : GemvEpilogue::kStore;
    a.y = y;
    a.ldy = m;
    a.pdl = opt_.use_pdl;
    a.kernel = opt_.gemv_kernel;
    APR_CUDA_RETURN_IF_ERROR(LaunchGemv(a, stream_));
    return absl::OkStatus();
  }
  return gemm_->LinearF32(w, m, k, x, n, y, m, accumulate ? 1.0f : 0.0f);
}

absl::Status CudaDecoder::BindDevice() {
  APR_CUDA_RETURN_IF_ERROR(cudaSetDevice(opt_.device));
  return absl::OkStatus();
}

absl::Status CudaDecoder::ResidualLinear(const __nv_bfloat16* w, int m, int k,
                                         const __nv_bfloat16* in, int n) {
  // Each rank holds a slice of k: rank 0 adds its partial product to the residual, the
  // others write theirs, and the all-reduce leaves residual + the sum on every rank.
  APR_RETURN_IF_ERROR(Linear(w, m, k, in, n, x_.get(), tp_ == nullptr || tp_->rank() == 0));
  if (tp_ != nullptr) APR_RETURN_IF_ERROR(tp_->AllReduceSum(x_.get(), int64_t{n} * m, stream_));
  return absl::OkStatus();
}

absl::Status CudaDecoder::GateUpSwiGlu(const CudaLayerWeights& lw, int n) {
  const ModelConfig& c = config();
  const int I = c.intermediate_size, H = c.hidden_size;
  if (opt_.use_gemv && n <= std::min(opt_.gemv_max_tokens, kGemvMaxTokens)) {
    GemvArgs a;
    a.w = lw.gate_up;
    a.x = xn_.get();
    a.m = I;
    a.k = H;
    a.n = n;
    a.epilogue = GemvEpilogue::kSwiGlu;
    a.out = act_.get();
    a.pdl = opt_.use_pdl;
    a.kernel = opt_.gemv_kernel;
    APR_CUDA_RETURN_IF_ERROR(LaunchGemv(a, stream_));
    return absl::OkStatus();
  }
  APR_RETURN_IF_ERROR(gemm_->LinearBf16(lw.gate_up, 2 * I, H, xn_.get(), n, gu_.get()));
  APR_CUDA_RETURN_IF_ERROR(LaunchSwiGlu(gu_.get(), n, I, act_.get(), stream_));
  return absl::OkStatus();
}

SlotTable CudaDecoder::PoolTable() const {
  const ModelConfig& c = config();
  const int L = c.num_hidden_layers, nkv = c.num_key_value_heads;
  return SlotTable{group_table_.get(), max_blocks_, L * nkv, nkv};
}

absl::Status CudaDecoder::QkvProjection(const CudaLayerWeights& lw, int n) {
  const ModelConfig& c = config();
  const int H = c.hidden_size, nh = c.num_attention_heads, nkv = c.num_key_value_heads;
  const int hd = c.head_dim, qkv = (nh + 2 * nkv) * hd;
  const float eps = static_cast<float>(c.rms_norm_eps);
  APR_CUDA_RETURN_IF_ERROR(LaunchRmsNorm(x_.get(), lw.input_norm, n, H, eps, xn_.get(), stream_));
  APR_RETURN_IF_ERROR(Linear(lw.qkv, qkv, H, xn_.get(), n, qkv_.get(), false));
  const QkvPrologueArgs pro{qkv_.get(), n, nh, nkv, hd, lw.qkv_bias, lw.q_norm, lw.k_norm, eps};
  if (QkvPrologueNeeded(pro)) APR_CUDA_RETURN_IF_ERROR(LaunchQkvPrologue(pro, stream_));
  return absl::OkStatus();
}

RopeAppendArgs CudaDecoder::RopeArgs(int n, int layer, const int32_t* positions,
                                     const int32_t* seq_slots, __nv_bfloat16* pool) const {
  const ModelConfig& c = config();
  RopeAppendArgs ra;
  ra.qkv = qkv_.get();
  ra.n = n;
  ra.num_heads = c.num_attention_heads;
  ra.num_kv_heads = c.num_key_value_heads;
  ra.head_dim = c.head_dim;
  rope_.ForDecode(&ra);
  ra.positions = positions;
  ra.seq_slots = seq_slots;
  ra.table = PoolTable();
  ra.layer = layer;
  ra.q_out = q_.get();
  ra.pool = pool;
  return ra;
}

absl::Status CudaDecoder::OProjAndMlp(const CudaLayerWeights& lw, int n) {
  const ModelConfig& c = config();
  const int H = c.hidden_size, nh = c.num_attention_heads, hd = c.head_dim;
  const float eps = static_cast<float>(c.rms_norm_eps);
  APR_RETURN_IF_ERROR(ResidualLinear(lw.o, H, nh * hd, attn_.get(), n));
  APR_CUDA_RETURN_IF_ERROR(
      LaunchRmsNorm(x_.get(), lw.post_attn_norm, n, H, eps, xn_.get(), stream_));
  APR_RETURN_IF_ERROR(GateUpSwiGlu(lw, n));
  APR_RETURN_IF_ERROR(ResidualLinear(lw.down, H, c.intermediate_size, act_.get(), n));
  return absl::OkStatus();
}

GpuPredictorShape CudaDecoder::PredictorShape() const {
  const ModelConfig& c = config();
  GpuPredictorShape s;
  s.max_sequences = opt_.max_sequences;
  s.layers = c.num_hidden_layers;
  s.first_layer = opt_.sparse.dense_layers;
  s.heads = c.num_attention_heads;
  s.kv_heads = c.num_key_value_heads;
  s.head_dim = c.head_dim;
  s.max_blocks = max_blocks_;
  s.k_blocks_max = KBlocksMax();
  return s;
}

// The step inputs the predictor reads: fixed places in d_step_.
PredictInputs CudaDecoder::PredictorInputs() const {
  PredictInputs in;
  in.next_lens = DeviceStep().next_lens;
  in.seq_slots = DeviceStep().seq_slots;
  in.history_row = DeviceStep().history_row;
  in.history_count = DeviceStep().history_count;
  in.error = error_flag_.get();
  return in;
}

PredictLaunch CudaDecoder::PredictArgs(int batch, int max_cols, bool recompute, int layer_begin,
                                       int layer_count) const {
  PredictLaunch p;
  p.batch = batch;
  p.max_cols = max_cols;
  p.recompute = recompute;
  p.k_blocks = PredictedBlocks(opt_.sparse.budget_tokens);
  p.query_blocks = opt_.sparse.hybrid ? HybridQueryBlocks(p.k_blocks) : 0;
  p.layer_begin = layer_begin;
  p.layer_count = layer_count;
  return p;
}

absl::Status CudaDecoder::SetSparse(const SparseOptions& sparse) {
  if (!sparse_capable_)
    return absl::FailedPreconditionError("this decoder was created without sparse support");
  if (PredictedBlocks(sparse.budget_tokens) > KBlocksMax() ||
      PredictedBlocks(sparse.budget_tokens) < 1)
    return absl::InvalidArgumentError("budget outside (128, max_budget_tokens]");
  if (sparse.dense_layers != opt_.sparse.dense_layers)
    return absl::InvalidArgumentError("dense_layers is fixed when the decoder is created");
  if (offload_ && !sparse.enabled)
    return absl::InvalidArgumentError("an offloaded KV cache needs sparse attention");
  if (sparse.calibration_source != opt_.sparse.calibration_source)
    return absl::InvalidArgumentError("calibration_source is fixed when the decoder is created");
  if (sparse.hybrid != opt_.sparse.hybrid)
    return absl::InvalidArgumentError("hybrid is fixed when the decoder is created");
  APR_RETURN_IF_ERROR(Synchronize());
  opt_.sparse = sparse;
  graphs_.Clear();
  return absl::OkStatus();
}

absl::Status CudaDecoder::SetOverlapPredictorMaxBatch(int max_batch) {
  APR_RETURN_IF_ERROR(Synchronize());
  opt_.overlap_predictor_max_batch = max_batch;
  graphs_.Clear();
  return absl::OkStatus();
}

absl::Status CudaDecoder::SetSkipPrediction(bool skip) {
  APR_RETURN_IF_ERROR(Synchronize());
  if (skip && offload_)
    return absl::FailedPreconditionError(
        "SetSkipPrediction: offloaded steps predict to plan their fetches");
  skip_prediction_ = skip;
  graphs_.Clear();
  return absl::OkStatus();
}

absl::Status CudaDecoder::SetPredictorTilesPerCta(int tiles) {
  APR_RETURN_IF_ERROR(GpuPredictor::CheckTilesPerCta(tiles));
  APR_RETURN_IF_ERROR(Synchronize());
  opt_.predictor_tiles_per_cta = tiles;
  if (predictor_ != nullptr) predictor_->SetTilesPerCta(tiles);
  graphs_.Clear();
  return absl::OkStatus();
}

absl::Status CudaDecoder::SetIncrementalPredictor(bool on) {
  APR_RETURN_IF_ERROR(BindDevice());
  APR_RETURN_IF_ERROR(Synchronize());
  opt_.incremental_predictor = on;
  if (predictor_ != nullptr) APR_RETURN_IF_ERROR(predictor_->SetIncremental(on));
  graphs_.Clear();
  return absl::OkStatus();
}

absl::Status CudaDecoder::SetUsePdl(bool use_pdl) {
  APR_RETURN_IF_ERROR(Synchronize());
  opt_.use_pdl = use_pdl;
  graphs_.Clear();
  return absl::OkStatus();
}

absl::Status CudaDecoder::SetUseGemv(bool use_gemv, int gemv_max_tokens, GemvKernel kernel) {
  APR_RETURN_IF_ERROR(Synchronize());
  opt_.use_gemv = use_gemv;
  opt_.gemv_max_tokens = gemv_max_tokens;
  opt_.gemv_kernel = kernel;
  graphs_.Clear();
  return absl::OkStatus();
}

absl::Status CudaDecoder::FillPoolRandom(uint64_t seed) {
  APR_RETURN_IF_ERROR(BindDevice());
  APR_CUDA_RETURN_IF_ERROR(FillUniformBf16(pool_.get(), pool_.size(), seed, 1.0f, stream_));
  if (dense_pool_.size() > 0) {
    APR_CUDA_RETURN_IF_ERROR(
        FillUniformBf16(dense_pool_.get(), dense_pool_.size(), seed + 2, 1.0f, stream_));
  }
  if (tier_ != nullptr) APR_RETURN_IF_ERROR(tier_->FillRandom(seed + 1));
  APR_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::Status CudaDecoder::FillRandomContext(Sequence& base, int64_t len, uint64_t seed) {
  APR_RETURN_IF_ERROR(BindDevice());
  auto& seq = static_cast<CudaSequence&>(base);
  if (seq.slot < 0 || seq.len != 0 || len < 1 || len > opt_.max_context)
    return absl::InvalidArgumentError("FillRandomContext needs an empty sequence with a slot");
  APR_RETURN_IF_ERROR(Synchronize());
  if (offload_) {
    APR_RETURN_IF_ERROR(OffloadFillRandomContext(seq, len));
  } else {
    APR_RETURN_IF_ERROR(Reserve(seq, len));
    seq.len = len;
  }
  if (!sparse_capable_) return absl::OkStatus();
  const ModelConfig& c = config();
  APR_RETURN_IF_ERROR(predictor_->FillRandomHistory(seq.slot, seed, stream_));
  if (key_summaries_) {
    const int64_t per =
        int64_t{c.num_hidden_layers} * c.num_key_value_heads * max_blocks_ * 2 * c.head_dim;
    APR_CUDA_RETURN_IF_ERROR(
        FillUniformBf16(key_summary_.get() + seq.slot * per, per, seed + 7, 1.0f, stream_));
  }
  seq.has_history = true;
  seq.hist_row = kHistoryRows - 1;
  seq.steps = 0;
  seq.hist_count = 0;
  APR_RETURN_IF_ERROR(predictor_->InvalidateCnnState(seq.slot, stream_));
  Sequence* p = &seq;
  APR_RETURN_IF_ERROR(PredictAsync(absl::MakeConstSpan(&p, 1)));
  if (offload_) {
    // PredictAsync's work is not a decode step: no step bookkeeping.
    step_pending_ = false;
    APR_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    APR_RETURN_IF_ERROR(OffloadFillRandomContextFinish(seq));
  }
  APR_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::Status CudaDecoder::PredictAsync(absl::Span<Sequence* const> seqs, bool advance_window) {
  APR_RETURN_IF_ERROR(BindDevice());
  if (!sparse_capable_) return absl::FailedPreconditionError("no sparse support");
  APR_RETURN_IF_ERROR(Synchronize());
  const int ms = opt_.max_sequences, B = static_cast<int>(seqs.size());
  if (B < 1 || B > ms) return absl::InvalidArgumentError("batch size");
  const StepInputs<int32_t> in = HostStep();
  for (int b = 0; b < B; ++b) {
    auto& s = static_cast<CudaSequence&>(*seqs[b]);
    if (!s.has_history) return absl::FailedPreconditionError("a sequence without history");
    if (advance_window) {
      s.hist_row = (s.hist_row + 1) % kHistoryRing;
      s.hist_count += 1;
    }
    in.seq_slots[b] = s.slot;
    in.history_row[b] = s.hist_row;
    in.next_lens[b] = static_cast<int32_t>(s.len + 1);
    in.history_count[b] = s.hist_count;
  }
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(d_step_.get(), h_step_.get(), h_step_.size() * 4,
                                           cudaMemcpyHostToDevice, stream_));
  int cols = 0;
  bool recompute = !advance_window;  // the state is for the previous count: a recomputation
  for (int b = 0; b < B; ++b) {
    cols = std::max(cols, NumCandidates(in.next_lens[b]));
    recompute |= CnnRecomputes(in.history_count[b]);
  }
  APR_RETURN_IF_ERROR(predictor_->PredictFor(
      PredictArgs(B, std::min(RoundUpPow2(cols), max_blocks_), recompute), stream_));
  step_pending_ = true;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::vector<CudaDecoder::BlockList>>> CudaDecoder::LastBlockLists(
    int layer) {
  APR_RETURN_IF_ERROR(BindDevice());
  APR_RETURN_IF_ERROR(Synchronize());
  const ModelConfig& c = config();
  const int nkv = c.num_key_value_heads, ms = opt_.max_sequences;
  if (!sparse_capable_ || layer < opt_.sparse.dense_layers || layer >= c.num_hidden_layers)
    return absl::InvalidArgumentError("not a sparse layer");
  const int li = layer - opt_.sparse.dense_layers;
  const int64_t n = int64_t{ms} * nkv * list_stride_;
  std::vector<int32_t> counts(int64_t{ms} * nkv), blocks(n), starts(n);
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpy(counts.data(), list_counts_.get() + int64_t{li} * ms * nkv,
                                      counts.size() * 4, cudaMemcpyDeviceToHost));
  APR_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(blocks.data(), list_blocks_.get() + li * n, n * 4, cudaMemcpyDeviceToHost));
  APR_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(starts.data(), list_starts_.get() + li * n, n * 4, cudaMemcpyDeviceToHost));
  std::vector<std::vector<BlockList>> out(last_batch_);
  for (int b = 0; b < last_batch_; ++b) {
    out[b].resize(nkv);
    for (int g = 0; g < nkv; ++g) {
      const int64_t r = int64_t{b} * nkv + g;
      for (int i = 0; i < counts[r]; ++i)
        out[b][g].emplace_back(blocks[r * list_stride_ + i], starts[r * list_stride_ + i]);
    }
  }
  return out;
}

}  // namespace apr::cuda
