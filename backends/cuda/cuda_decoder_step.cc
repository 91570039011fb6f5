// CudaDecoder's decode step (docs/CUDA.md "Decode step (one graph)"): the batch's inputs
// staged in pinned memory, then the device work -- block lists, every layer, logits, the
// next step's prediction -- enqueued eagerly or replayed as a CUDA graph.
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "backends/cuda/argmax_rows.h"
#include "backends/cuda/block_rules.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_decoder.h"
#include "backends/cuda/cuda_decoder_internal.h"
#include "backends/cuda/norm_ops.h"
#include "backends/cuda/offload_kernels.h"
#include "backends/cuda/paged_decode_attention.h"
#include "backends/cuda/predictor/topk_select.h"
#include "backends/cuda/rope_append.h"

namespace apr::cuda {

absl::Status CudaDecoder::CheckStepSequences(absl::Span<Sequence* const> seqs,
                                             absl::Span<const int32_t> tokens, bool sparse) const {
  const ModelConfig& c = config();
  const int B = static_cast<int>(seqs.size());
  for (int b = 0; b < B; ++b) {
    auto& s = static_cast<CudaSequence&>(*seqs[b]);
    if (s.hooks != nullptr) return absl::UnimplementedError("AttentionHooks are not supported");
    if (s.slot < 0) return absl::ResourceExhaustedError("a sequence without a slot");
    if (s.len == 0)
      return absl::FailedPreconditionError("decode before prefill: the sequence is empty");
    if (tokens[b] < 0 || tokens[b] >= c.vocab_size)
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", tokens[b], " is outside the vocabulary [0, ", c.vocab_size, ")"));
    if (s.len + 1 > opt_.max_context)
      return absl::OutOfRangeError(absl::StrCat("sequence would reach ", s.len + 1,
                                                " tokens; max_context is ", opt_.max_context));
    if (sparse && !s.has_history)
      return absl::FailedPreconditionError("sparse decode of a sequence without history");
    for (int o = 0; o < b; ++o) {
      if (seqs[o] == seqs[b])
        return absl::InvalidArgumentError("a sequence appears twice in one decode batch");
    }
  }
  return absl::OkStatus();
}

absl::Status CudaDecoder::PrepareStep(absl::Span<Sequence* const> seqs,
                                      absl::Span<const int32_t> tokens, StepKey* key) {
  const ModelConfig& c = config();
  if (seqs.size() != tokens.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(seqs.size(), " sequences but ", tokens.size(), " tokens"));
  }
  const int B = static_cast<int>(seqs.size());
  if (B < 1 || B > opt_.max_sequences) {
    return absl::InvalidArgumentError(
        absl::StrCat("decode batch of ", B, "; this decoder takes 1 to ", opt_.max_sequences));
  }
  APR_RETURN_IF_ERROR(Synchronize());
  const bool sparse = sparse_capable_ && opt_.sparse.enabled;
  const int cal = opt_.sparse.calibration_step;
  int max_blocks = 1;
  bool any_dense = false;
  const StepInputs<int32_t> in = HostStep();
  APR_RETURN_IF_ERROR(CheckStepSequences(seqs, tokens, sparse));
  if (offload_) APR_RETURN_IF_ERROR(PrepareOffloadStep(seqs));
  for (int b = 0; b < B; ++b) {
    auto& s = static_cast<CudaSequence&>(*seqs[b]);
    if (!offload_) APR_RETURN_IF_ERROR(Reserve(s, s.len + 1));
    const int len = static_cast<int>(s.len) + 1;
    max_blocks = std::max(max_blocks, NumBlocks(len));
    const bool dense = sparse && cal > 0 && (s.steps + 1) % cal == 0;
    any_dense |= dense;
    in.tokens[b] = tokens[b];
    in.positions[b] = len - 1;
    in.context_lens[b] = len;
    in.seq_slots[b] = s.slot;
    in.history_row[b] = (s.hist_row + 1) % kHistoryRing;
    in.history_count[b] = s.hist_count + 1;
    key->recompute |= CnnRecomputes(s.hist_count + 1);
    in.dense[b] = dense ? 1 : 0;
    in.next_lens[b] = len + 1;
  }
  const int nkv = c.num_key_value_heads;
  key->batch = B;
  key->sparse = sparse;
  key->any_dense = any_dense;
  key->predict = sparse && !skip_prediction_;
  key->recompute &= key->predict;  // only a predicting step's graph depends on it
  key->splits_dense =
      std::min(max_splits_, ChooseSplits(B, nkv, RoundUpPow2(max_blocks), num_sms_));
  key->splits_list =
      sparse ? std::min(max_splits_, ChooseSplits(B, nkv, list_stride_, num_sms_)) : 0;
  if (sparse) {
    // The predictor's grid covers the widest image; bucketed so graphs are reused.
    int cols = 0;
    for (int b = 0; b < B; ++b) cols = std::max(cols, NumCandidates(in.next_lens[b]));
    key->predict_cols = std::min(RoundUpPow2(cols), max_blocks_);
  }
  if (any_dense && summary_calibration_)
    key->calib_cols = std::min(RoundUpPow2(max_blocks), max_blocks_);
  return absl::OkStatus();
}

int CudaDecoder::FirstListedLayer(const StepKey& key) const {
  return key.sparse ? opt_.sparse.dense_layers : static_cast<int>(config().num_hidden_layers);
}

absl::Status CudaDecoder::EnqueueStep(const StepKey& key) {
  const ModelConfig& c = config();
  const int B = key.batch;
  const int H = c.hidden_size, L = c.num_hidden_layers;
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(d_step_.get(), h_step_.get(), h_step_.size() * 4,
                                           cudaMemcpyHostToDevice, stream_));
  // A remote tier enqueues eagerly and waits for each layer's UCX gets on the host.
  const bool eager = !ReplaysSteps();
  if (offload_) {
    APR_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(d_wb_.get(), h_wb_.get(), h_wb_.size() * 4,
                                             cudaMemcpyHostToDevice, stream_));
  }
  if (key.sparse) APR_RETURN_IF_ERROR(EnqueueBuildLists(key));
  APR_CUDA_RETURN_IF_ERROR(
      LaunchEmbedding(DeviceStep().tokens, B, weights_->embed(), H, x_.get(), stream_));
  for (int l = 0; l < L; ++l) {
    const CudaLayerWeights& lw = weights_->layer(l);
    APR_RETURN_IF_ERROR(QkvProjection(lw, B));
    APR_CUDA_RETURN_IF_ERROR(LaunchRopeAppend(StepRopeArgs(B, l), stream_));
    if (DenseLayerResident(l)) {
      APR_RETURN_IF_ERROR(DenseLayerWriteBack(B, l));  // no fetch: its KV is resident
    } else if (offload_) {
      APR_RETURN_IF_ERROR(WaitLayerFetch(l, eager));
    }
    // predictor-hybrid: the query's blocks join this layer's list (cuda_decoder_hybrid.cc).
    if (opt_.sparse.hybrid) APR_RETURN_IF_ERROR(EnqueueQueryBlocks(key, l));
    APR_RETURN_IF_ERROR(EnqueueStepAttention(key, l));
    APR_RETURN_IF_ERROR(PredictAfterLayer(key, l, eager));
    APR_RETURN_IF_ERROR(OProjAndMlp(lw, B));
  }
  return EnqueueStepEnd(key, eager);
}

// Per sparse layer, KV head and sequence: [sink, the selection, local window] with slots.
absl::Status CudaDecoder::EnqueueBuildLists(const StepKey& key) {
  APR_CUDA_RETURN_IF_ERROR(LaunchBuildLists(ListsArgs(key), stream_));
  return absl::OkStatus();
}

BuildListsArgs CudaDecoder::ListsArgs(const StepKey& key) const {
  const ModelConfig& c = config();
  const int ms = opt_.max_sequences, nkv = c.num_key_value_heads, L = c.num_hidden_layers;
  const int first_sparse = FirstListedLayer(key);
  BuildListsArgs bl;
  bl.batch = key.batch;
  bl.first_layer = first_sparse;
  bl.num_layers = L - first_sparse;
  bl.num_kv_heads = nkv;
  bl.context_lens = DeviceStep().context_lens;
  bl.seq_slots = DeviceStep().seq_slots;
  bl.dense = key.any_dense ? DeviceStep().dense : nullptr;
  bl.sel = predictor_->SelectionView();
  bl.table = PoolTable();
  if (offload_) bl.cache = Cache();
  bl.rows_per_layer = ms * nkv;
  bl.counts = list_counts_.get();
  bl.blocks = list_blocks_.get();
  bl.slots = list_slots_.get();
  bl.starts = list_starts_.get();
  bl.calib_counts = calib_counts_.get();
  bl.list_stride = list_stride_;
  bl.error = error_flag_.get();
  return bl;
}

// RoPE on the step's q and k, its K/V into the tail block (and the block's key summary
// when the token completes it).
RopeAppendArgs CudaDecoder::StepRopeArgs(int batch, int layer) const {
  RopeAppendArgs ra =
      RopeArgs(batch, layer, DeviceStep().positions, DeviceStep().seq_slots, pool_.get());
  if (DenseLayerResident(layer)) {
    ra.pool = dense_pool_.get();
    ra.table = DenseLayerTable();
  } else if (offload_) {
    ra.cache = Cache();
  }
  if (key_summaries_) {
    ra.key_summary = key_summary_.get();
    ra.summary_layers = config().num_hidden_layers;
    ra.summary_blocks = max_blocks_;
  }
  return ra;
}

// Decode attention of layer l: dense over the pool, or over the layer's block lists,
// writing the history row (sparse layers).
PagedDecodeArgs CudaDecoder::DecodeAttentionArgs(const StepKey& key, int l) const {
  const ModelConfig& c = config();
  const int ms = opt_.max_sequences;
  const int nh = c.num_attention_heads, nkv = c.num_key_value_heads, hd = c.head_dim;
  const int L = c.num_hidden_layers;
  const int first_sparse = FirstListedLayer(key);
  PagedDecodeArgs pa;
  pa.batch = key.batch;
  pa.num_heads = nh;
  pa.num_kv_heads = nkv;
  pa.head_dim = hd;
  pa.scale = 1.0f / std::sqrt(static_cast<float>(hd));
  pa.q = q_.get();
  pa.pool = pool_.get();
  pa.context_lens = DeviceStep().context_lens;
  pa.seq_slots = DeviceStep().seq_slots;
  pa.table = PoolTable();
  pa.layer = l;
  pa.window = static_cast<int>(c.sliding_window);
  pa.splits = key.splits_dense;
  pa.part_o = part_o_.get();
  pa.part_ml = part_ml_.get();
  pa.out = attn_.get();
  if (DenseLayerResident(l)) {
    pa.pool = dense_pool_.get();
    pa.table = DenseLayerTable();
  }
  if (l >= first_sparse) {
    const int li = l - first_sparse;
    pa.lists.counts = list_counts_.get() + int64_t{li} * ms * nkv;
    pa.lists.blocks = list_blocks_.get() + int64_t{li} * ms * nkv * list_stride_;
    pa.lists.slots = list_slots_.get() + int64_t{li} * ms * nkv * list_stride_;
    pa.lists.starts = list_starts_.get() + int64_t{li} * ms * nkv * list_stride_;
    pa.lists.stride = list_stride_;
    pa.splits = key.splits_list;
    pa.block_max = block_max_.get();
    pa.score_stride = max_blocks_;
    pa.history = predictor_->history();
    pa.history_row = DeviceStep().history_row;
    pa.history_layers = L;
    pa.history_rows = kHistoryRing;
    pa.history_cols = max_blocks_;
    if (summary_calibration_ && key.any_dense) pa.out_ml = attn_ml_.get();
  }
  return pa;
}

// The attention, then on a calibration step the full row into the history.
absl::Status CudaDecoder::EnqueueStepAttention(const StepKey& key, int l) {
  const PagedDecodeArgs pa = DecodeAttentionArgs(key, l);
  APR_CUDA_RETURN_IF_ERROR(LaunchPagedDecodeAttention(pa, stream_));
  const int first_sparse = FirstListedLayer(key);
  if (key.any_dense && l >= first_sparse && summary_calibration_) {
    // Calibration from the key summaries: blocks the sparse attention did not list get
    // an estimate (offload_kernels.h); no block is read.
    APR_CUDA_RETURN_IF_ERROR(LaunchSummaryCalibration(SummaryCalibrationFor(key, l, pa), stream_));
  } else if (key.any_dense && l >= first_sparse) {
    // Calibration: the full attention row replaces the history row of the calibrating
    // sequences (other rows have count 0 and are skipped).
    PagedDecodeArgs cal = pa;
    cal.lists = BlockLists{calib_counts_.get(), nullptr, nullptr, nullptr, 0};
    cal.splits = key.splits_dense;
    cal.history_only = true;
    cal.out = nullptr;
    APR_CUDA_RETURN_IF_ERROR(LaunchPagedDecodeAttention(cal, stream_));
  }
  return absl::OkStatus();
}

SummaryCalibrationArgs CudaDecoder::SummaryCalibrationFor(const StepKey& key, int l,
                                                          const PagedDecodeArgs& pa) const {
  const ModelConfig& c = config();
  const int nh = c.num_attention_heads, nkv = c.num_key_value_heads, hd = c.head_dim;
  const int L = c.num_hidden_layers;
  SummaryCalibrationArgs sc;
  sc.batch = key.batch;
  sc.num_heads = nh;
  sc.num_kv_heads = nkv;
  sc.head_dim = hd;
  sc.scale = pa.scale;
  sc.q = q_.get();
  sc.ml = attn_ml_.get();
  sc.context_lens = DeviceStep().context_lens;
  sc.seq_slots = DeviceStep().seq_slots;
  sc.dense = DeviceStep().dense;
  sc.history_row = DeviceStep().history_row;
  sc.lists = pa.lists;
  sc.summary = key_summary_.get();
  sc.summary_layers = L;
  sc.max_blocks = max_blocks_;
  sc.layer = l;
  sc.history = predictor_->history();
  sc.history_layers = L;
  sc.history_rows = kHistoryRing;
  sc.history_cols = max_blocks_;
  sc.estimate = opt_.sparse.summary_estimate;
  sc.max_cols = key.calib_cols;
  return sc;
}

// After layer l's attention: offloaded, the prediction, plan and fetch of a finished layer
// group; resident at small batches, the CNN of finished layer pairs on the side stream.
absl::Status CudaDecoder::PredictAfterLayer(const StepKey& key, int l, bool eager) {
  const int B = key.batch, L = config().num_hidden_layers;
  const int first_sparse = FirstListedLayer(key);
  const int group = opt_.offload.predict_group_layers;
  // Offloaded, the groups count the sparse layers (the dense ones are not predicted).
  const int ls = l - opt_.sparse.dense_layers;
  if (offload_ && ls >= 0 && ((ls + 1) % group == 0 || l == L - 1)) {
    // Predict the group's blocks for the next step, plan the cache, start the fetch:
    // one launch each for `group` layers (docs/CUDA.md "KV offload").
    const int first = opt_.sparse.dense_layers + ls / group * group;
    APR_RETURN_IF_ERROR(PrefetchLayers(B, first, l - first + 1, key, eager));
  } else if (key.predict && OverlapPredictor(B) && l >= first_sparse) {
    // The history rows of this layer and the one before are written: their CNN scores on
    // the side stream, one launch per kOverlapCnnLayers layers. The top-k runs once for
    // every layer after the last CNN, beside the final MLP and lm_head: per layer, its few
    // long CTAs cost the step twice their own time at 128K batch 1 (docs/PERFORMANCE.md).
    const int li = l - first_sparse;
    if ((li + 1) % kOverlapCnnLayers == 0 || l == L - 1) {
      const int first = li / kOverlapCnnLayers * kOverlapCnnLayers;
      APR_RETURN_IF_ERROR(predictor_->ForkSideStream(l, stream_));
      APR_RETURN_IF_ERROR(predictor_->PredictScores(
          PredictArgs(B, key.predict_cols, key.recompute, first, li - first + 1),
          predictor_->side_stream()));
    }
    if (l == L - 1) {
      APR_RETURN_IF_ERROR(predictor_->SelectTopk(PredictArgs(B, key.predict_cols, key.recompute),
                                                 predictor_->side_stream()));
    }
  }
  return absl::OkStatus();
}

// Final norm and lm_head; the next step's selection (joined from the side stream,
// predicted here, or the previous one kept); the fetches joined; logits to the host.
absl::Status CudaDecoder::EnqueueStepEnd(const StepKey& key, bool eager) {
  const ModelConfig& c = config();
  const int B = key.batch, H = c.hidden_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  APR_CUDA_RETURN_IF_ERROR(
      LaunchRmsNorm(x_.get(), weights_->final_norm(), B, H, eps, xn_.get(), stream_));
  APR_RETURN_IF_ERROR(
      Linear(weights_->lm_head(), c.vocab_size, H, xn_.get(), B, logits_.get(), false));
  if (key.predict && OverlapPredictor(B)) {
    APR_RETURN_IF_ERROR(predictor_->JoinSideStream(stream_));
  } else if (key.predict && !offload_) {
    APR_RETURN_IF_ERROR(
        predictor_->PredictFor(PredictArgs(B, key.predict_cols, key.recompute), stream_));
  } else if (key.sparse && skip_prediction_) {
    APR_CUDA_RETURN_IF_ERROR(LaunchReuseSelection(
        predictor_->SelectionView(), DeviceStep().seq_slots, DeviceStep().next_lens, B, stream_));
  }
  if (offload_) APR_RETURN_IF_ERROR(FinishStepFetches(eager));
  // The picks always (a few microseconds); the logits after the step, when asked for
  // (EnqueueDecodeStep), so that one captured graph serves both.
  APR_CUDA_RETURN_IF_ERROR(
      LaunchArgMaxRows(logits_.get(), B, c.vocab_size, d_argmax_.get(), stream_));
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(h_argmax_.get(), d_argmax_.get(),
                                           int64_t{B} * sizeof(int32_t), cudaMemcpyDeviceToHost,
                                           stream_));
  return absl::OkStatus();
}

absl::Status CudaDecoder::DecodeStepAsync(absl::Span<Sequence* const> seqs,
                                          absl::Span<const int32_t> tokens, cudaEvent_t start,
                                          cudaEvent_t stop) {
  return EnqueueDecodeStep(seqs, tokens, /*copy_logits=*/true, start, stop);
}

absl::Status CudaDecoder::EnqueueDecodeStep(absl::Span<Sequence* const> seqs,
                                            absl::Span<const int32_t> tokens, bool copy_logits,
                                            cudaEvent_t start, cudaEvent_t stop) {
  APR_RETURN_IF_ERROR(BindDevice());
  StepKey key;
  APR_RETURN_IF_ERROR(PrepareStep(seqs, tokens, &key));
  if (start != nullptr) APR_CUDA_RETURN_IF_ERROR(cudaEventRecord(start, stream_));
  if (ReplaysSteps()) {
    APR_RETURN_IF_ERROR(graphs_.Run(key, stream_, [&] { return EnqueueStep(key); }));
  } else {
    APR_RETURN_IF_ERROR(EnqueueStep(key));
  }
  if (copy_logits) {
    const int64_t bytes = int64_t{key.batch} * config().vocab_size * sizeof(float);
    APR_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(h_logits_.get(), logits_.get(), bytes, cudaMemcpyDeviceToHost, stream_));
  }
  if (stop != nullptr) APR_CUDA_RETURN_IF_ERROR(cudaEventRecord(stop, stream_));
  step_pending_ = true;
  last_batch_ = key.batch;
  ++step_counter_;
  for (Sequence* p : seqs) {
    auto& s = static_cast<CudaSequence&>(*p);
    s.len += 1;
    if (key.sparse) {
      s.hist_row = (s.hist_row + 1) % kHistoryRing;
      s.steps += 1;
      s.hist_count += 1;
    }
  }
  return absl::OkStatus();
}

absl::Status CudaDecoder::Synchronize() {
  if (!step_pending_) return absl::OkStatus();
  APR_RETURN_IF_ERROR(BindDevice());
  step_pending_ = false;
  APR_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  if (offload_) APR_RETURN_IF_ERROR(AfterOffloadStep());
  if (sparse_capable_) {
    int32_t err = 0;
    APR_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(&err, error_flag_.get(), sizeof(err), cudaMemcpyDeviceToHost));
    if (err != 0) {
      APR_CUDA_RETURN_IF_ERROR(cudaMemset(error_flag_.get(), 0, sizeof(int32_t)));
      return absl::InternalError(
          offload_ ? "a decode step found an inconsistent block selection or GPU block cache "
                     "(a selection made for another length, a block neither cached nor in the "
                     "tier, or more wanted blocks than cache slots)"
                   : "a decode step found no block selection for its context length (predictor "
                     "not run for this step; call PredictAsync after changing sparse settings)");
    }
  }
  return absl::OkStatus();
}

absl::Status CudaDecoder::DecodeBatch(absl::Span<Sequence* const> seqs,
                                      absl::Span<const int32_t> tokens,
                                      std::vector<float>* logits) {
  APR_RETURN_IF_ERROR(DecodeStepAsync(seqs, tokens));
  APR_RETURN_IF_ERROR(Synchronize());
  const int64_t n = int64_t{static_cast<int>(seqs.size())} * config().vocab_size;
  logits->assign(h_logits_.get(), h_logits_.get() + n);
  return absl::OkStatus();
}

absl::Status CudaDecoder::DecodeBatchArgMax(absl::Span<Sequence* const> seqs,
                                            absl::Span<const int32_t> tokens, bool need_logits,
                                            std::vector<int32_t>* argmax,
                                            std::vector<float>* logits) {
  APR_RETURN_IF_ERROR(EnqueueDecodeStep(seqs, tokens, need_logits, nullptr, nullptr));
  APR_RETURN_IF_ERROR(Synchronize());
  argmax->assign(h_argmax_.get(), h_argmax_.get() + seqs.size());
  if (need_logits) {
    logits->assign(h_logits_.get(), h_logits_.get() + seqs.size() * config().vocab_size);
  } else {
    logits->clear();
  }
  return absl::OkStatus();
}

}  // namespace apr::cuda
