// CudaDecoder's prefill (docs/DESIGN.md "Prefill"): the prompt in chunks through every
// layer into the KV pool (or an offloaded sequence's staging pool), the logits, then the
// predictor's history and the first decode step's selection.
#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "backends/cuda/block_rules.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_decoder.h"
#include "backends/cuda/cuda_decoder_internal.h"
#include "backends/cuda/norm_ops.h"
#include "backends/cuda/offload_kernels.h"
#include "backends/cuda/prefill_attention.h"
#include "backends/cuda/rope_append.h"

namespace apr::cuda {

absl::Status CudaDecoder::PrefillChunk(CudaSequence& seq, const int32_t* tokens, int n,
                                       int64_t start, int64_t pass_end, bool save_q,
                                       int64_t save_from_pos) {
  const ModelConfig& c = config();
  const int H = c.hidden_size, nh = c.num_attention_heads, nkv = c.num_key_value_heads;
  const int hd = c.head_dim;
  std::vector<int32_t> pos(n), slots(n, seq.slot);
  for (int i = 0; i < n; ++i) pos[i] = static_cast<int32_t>(start + i);
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(prefill_tokens_.get(), tokens, n * sizeof(int32_t),
                                           cudaMemcpyHostToDevice, stream_));
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(prefill_pos_.get(), pos.data(), n * sizeof(int32_t),
                                           cudaMemcpyHostToDevice, stream_));
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(prefill_slots_.get(), slots.data(), n * sizeof(int32_t),
                                           cudaMemcpyHostToDevice, stream_));
  APR_CUDA_RETURN_IF_ERROR(
      LaunchEmbedding(prefill_tokens_.get(), n, weights_->embed(), H, x_.get(), stream_));
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const CudaLayerWeights& lw = weights_->layer(l);
    APR_RETURN_IF_ERROR(QkvProjection(lw, n));
    RopeAppendArgs ra = RopeArgs(n, l, prefill_pos_.get(), prefill_slots_.get(), prefill_pool_);
    rope_.ForPrefill(pass_end, &ra);
    APR_CUDA_RETURN_IF_ERROR(LaunchRopeAppend(ra, stream_));
    PrefillAttentionArgs pa;
    pa.num_heads = nh;
    pa.num_kv_heads = nkv;
    pa.head_dim = hd;
    pa.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    pa.q = q_.get();
    pa.n = n;
    pa.start = static_cast<int>(start);
    pa.pool = prefill_pool_;
    pa.seq_slot = seq.slot;
    pa.table = PoolTable();
    pa.layer = l;
    pa.out = attn_.get();
    pa.window = static_cast<int>(c.sliding_window);
    pa.cuda_cores = opt_.prefill_cuda_cores;
    APR_CUDA_RETURN_IF_ERROR(LaunchPrefillAttention(pa, stream_));
    if (save_q && start + n > save_from_pos) {
      const int64_t from = std::max(start, save_from_pos);
      const int64_t rows = start + n - from;
      APR_RETURN_IF_ERROR(predictor_->SaveQueries(
          l, from - save_from_pos, q_.get() + (from - start) * nh * hd, rows, stream_));
    }
    APR_RETURN_IF_ERROR(OProjAndMlp(lw, n));
  }
  return absl::OkStatus();
}

// Final norm and lm_head for `rows` rows of x (device), copied to host_out ([rows][vocab]).
absl::Status CudaDecoder::LogitsRows(const float* x, int rows, float* host_out) {
  const ModelConfig& c = config();
  const int H = c.hidden_size, V = c.vocab_size;
  const int step = std::max(opt_.max_sequences, 16);
  for (int r0 = 0; r0 < rows; r0 += step) {
    const int n = std::min(step, rows - r0);
    APR_CUDA_RETURN_IF_ERROR(LaunchRmsNorm(x + int64_t{r0} * H, weights_->final_norm(), n, H,
                                           static_cast<float>(c.rms_norm_eps), xn_.get(), stream_));
    APR_RETURN_IF_ERROR(Linear(weights_->lm_head(), V, H, xn_.get(), n, logits_.get(), false));
    APR_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host_out + int64_t{r0} * V, logits_.get(),
                                             int64_t{n} * V * sizeof(float), cudaMemcpyDeviceToHost,
                                             stream_));
    APR_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  }
  return absl::OkStatus();
}

absl::Status CudaDecoder::CheckPrefill(const CudaSequence& seq,
                                       absl::Span<const int32_t> tokens) const {
  const ModelConfig& c = config();
  if (seq.hooks != nullptr) {
    return absl::UnimplementedError(
        "the CUDA backend selects blocks with its GPU predictor (CudaDecoderOptions::sparse); "
        "AttentionHooks are not supported");
  }
  if (seq.slot < 0) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the sequence got no slot: all ", opt_.max_sequences, " were in use (max_sequences)"));
  }
  if (tokens.empty()) return absl::InvalidArgumentError("no tokens given");
  for (int32_t t : tokens) {
    if (t < 0 || t >= c.vocab_size)
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", t, " is outside the vocabulary [0, ", c.vocab_size, ")"));
  }
  const int64_t n = static_cast<int64_t>(tokens.size()), start = seq.len;
  if (start + n > opt_.max_context) {
    return absl::OutOfRangeError(absl::StrCat("sequence would reach ", start + n,
                                              " tokens; this decoder holds ", opt_.max_context,
                                              " (max_context)"));
  }
  return absl::OkStatus();
}

absl::Status CudaDecoder::Prefill(Sequence& base, absl::Span<const int32_t> tokens,
                                  std::vector<float>* last_logits, std::vector<float>* all_logits) {
  APR_RETURN_IF_ERROR(BindDevice());
  auto& seq = static_cast<CudaSequence&>(base);
  APR_RETURN_IF_ERROR(CheckPrefill(seq, tokens));
  const int64_t n = static_cast<int64_t>(tokens.size()), start = seq.len;
  APR_RETURN_IF_ERROR(Synchronize());
  APR_RETURN_IF_ERROR(PreparePrefillPool(seq, start, n));
  const int64_t hist_rows = std::min<int64_t>(kHistoryRows, n);
  const int64_t save_from = start + n - hist_rows;
  APR_RETURN_IF_ERROR(PrefillChunks(seq, tokens, save_from, last_logits, all_logits));
  seq.len = start + n;
  if (sparse_capable_) APR_RETURN_IF_ERROR(HistoryAfterPrefill(seq, start, hist_rows, save_from));
  if (offload_) {
    absl::Status s = KeepDenseLayersResident(seq, start);
    if (s.ok()) s = OffloadAfterPrefill(seq, seq.staging.get());
    prefill_pool_ = nullptr;
    APR_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    if (!s.ok()) {  // the sequence cannot continue: only a new one can be prefilled
      seq.len = 0;
      seq.has_history = false;
      return s;
    }
  }
  APR_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  APR_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

absl::Status CudaDecoder::PreparePrefillPool(CudaSequence& seq, int64_t start, int64_t n) {
  if (offload_) {
    if (start != 0 && seq.staging_blocks == 0) {
      return absl::FailedPreconditionError(
          "with an offloaded KV cache a sequence takes no more prompt after its first decode "
          "step (its prompt blocks left the GPU)");
    }
    // The prompt's blocks go to the sequence's staging pool (prefill attention reads all
    // of them, earlier parts' included), and from there to the tier.
    APR_RETURN_IF_ERROR(GrowStaging(seq, NumBlocks(static_cast<int>(start + n))));
    prefill_pool_ = seq.staging.get();
  } else {
    APR_RETURN_IF_ERROR(Reserve(seq, start + n));
  }
  return absl::OkStatus();
}

absl::Status CudaDecoder::PrefillChunks(CudaSequence& seq, absl::Span<const int32_t> tokens,
                                        int64_t save_from, std::vector<float>* last_logits,
                                        std::vector<float>* all_logits) {
  const ModelConfig& c = config();
  const int64_t n = static_cast<int64_t>(tokens.size()), start = seq.len;
  const int V = c.vocab_size;
  if (all_logits != nullptr) all_logits->resize(n * V);
  for (int64_t c0 = 0; c0 < n; c0 += opt_.prefill_chunk) {
    const int m = static_cast<int>(std::min<int64_t>(opt_.prefill_chunk, n - c0));
    APR_RETURN_IF_ERROR(PrefillChunk(seq, tokens.data() + c0, m, start + c0, start + n,
                                     sparse_capable_, save_from));
    if (all_logits != nullptr) {
      APR_RETURN_IF_ERROR(LogitsRows(x_.get(), m, all_logits->data() + c0 * V));
    } else if (c0 + m == n && last_logits != nullptr) {
      last_logits->resize(V);
      APR_RETURN_IF_ERROR(
          LogitsRows(x_.get() + int64_t{m - 1} * c.hidden_size, 1, last_logits->data()));
    }
  }
  if (all_logits != nullptr && last_logits != nullptr)
    last_logits->assign(all_logits->end() - V, all_logits->end());
  return absl::OkStatus();
}

absl::Status CudaDecoder::HistoryAfterPrefill(CudaSequence& seq, int64_t start, int64_t hist_rows,
                                              int64_t save_from) {
  APR_RETURN_IF_ERROR(
      predictor_->InitHistory(prefill_pool_, PoolTable(), seq.slot, static_cast<int>(hist_rows),
                              static_cast<int>(save_from), opt_.prefill_cuda_cores, stream_));
  seq.has_history = true;
  seq.hist_row = kHistoryRows - 1;
  seq.steps = 0;
  seq.hist_count = 0;
  APR_RETURN_IF_ERROR(predictor_->InvalidateCnnState(seq.slot, stream_));
  if (key_summaries_) APR_RETURN_IF_ERROR(PrefillKeySummary(seq, start));
  const StepInputs<int32_t> in = HostStep();
  in.seq_slots[0] = seq.slot;
  in.history_row[0] = seq.hist_row;
  in.history_count[0] = seq.hist_count;
  in.next_lens[0] = static_cast<int32_t>(seq.len + 1);
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(d_step_.get(), h_step_.get(), h_step_.size() * 4,
                                           cudaMemcpyHostToDevice, stream_));
  return predictor_->PredictFor(
      PredictArgs(1,
                  std::min(RoundUpPow2(NumCandidates(static_cast<int>(seq.len) + 1)), max_blocks_),
                  /*recompute=*/true),
      stream_);
}

// The key summaries of the blocks this prompt part completed ([start, len) in blocks).
absl::Status CudaDecoder::PrefillKeySummary(const CudaSequence& seq, int64_t start) {
  const ModelConfig& c = config();
  KeySummaryArgs ks;
  ks.pool = prefill_pool_;
  ks.table = PoolTable();
  ks.seq_slot = seq.slot;
  ks.layers = c.num_hidden_layers;
  ks.kv_heads = c.num_key_value_heads;
  ks.head_dim = c.head_dim;
  ks.max_blocks = max_blocks_;
  ks.first_block = static_cast<int>(start / kBlockTokens);
  ks.num_blocks = static_cast<int>(seq.len / kBlockTokens) - ks.first_block;
  ks.summary = key_summary_.get();
  APR_CUDA_RETURN_IF_ERROR(LaunchKeySummary(ks, stream_));
  return absl::OkStatus();
}

}  // namespace apr::cuda
