#include "backends/cuda/predictor/gpu_predictor.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "backends/cuda/block_rules.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/device_alloc.h"
#include "backends/cuda/fill.h"
#include "backends/cuda/prefill_attention.h"

namespace apr::cuda {

absl::Status GpuPredictor::CheckTilesPerCta(int tiles) {
  if (tiles == 0 || ValidCnnTilesPerCta(tiles)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "predictor_tiles_per_cta must be 0 or a positive multiple of 4 up to 64, got ", tiles));
}

GpuPredictor::GpuPredictor(const GpuPredictorShape& shape, const PredictInputs& inputs,
                           bool incremental, int tiles_per_cta)
    : shape_(shape), in_(inputs), incremental_(incremental), tiles_per_cta_(tiles_per_cta) {}

absl::StatusOr<std::unique_ptr<GpuPredictor>> GpuPredictor::Create(
    const GpuPredictorShape& shape, const PredictInputs& inputs, absl::Span<const float> weights,
    bool incremental, int tiles_per_cta, int fill_byte, cudaStream_t stream) {
  if (weights.size() != PredictorLayout::kSize)
    return absl::InvalidArgumentError("sparse attention needs the predictor's weights");
  std::unique_ptr<GpuPredictor> p(new GpuPredictor(shape, inputs, incremental, tiles_per_cta));
  APR_RETURN_IF_ERROR(p->AllocateCnn(weights, fill_byte, stream));
  APR_RETURN_IF_ERROR(p->AllocateRest(fill_byte));
  return p;
}

GpuPredictor::~GpuPredictor() {
  for (cudaEvent_t e : layer_events_) cudaEventDestroy(e);
  if (side_done_ != nullptr) cudaEventDestroy(side_done_);
  if (side_stream_ != nullptr) cudaStreamDestroy(side_stream_);
}

// The weights, the history, the CNN's state and fragments, the side stream.
absl::Status GpuPredictor::AllocateCnn(absl::Span<const float> weights, int fill,
                                       cudaStream_t stream) {
  const GpuPredictorShape& s = shape_;
  const int ms = s.max_sequences, ls = s.predicted_layers(), nkv = s.kv_heads;
  APR_RETURN_IF_ERROR(Alloc(fill, &predictor_w_, PredictorLayout::kSize));
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpy(predictor_w_.get(), weights.data(),
                                      PredictorLayout::kSize * sizeof(float),
                                      cudaMemcpyHostToDevice));
  APR_RETURN_IF_ERROR(
      Alloc(fill, &history_, int64_t{ms} * s.layers * nkv * kHistoryRing * s.max_blocks));
  // Fresh history memory reads as zero; FillRandomContext and prefill overwrite it.
  APR_CUDA_RETURN_IF_ERROR(cudaMemset(history_.get(), 0, history_.bytes()));
  APR_RETURN_IF_ERROR(Alloc(fill, &cnn_interior_, int64_t{ms} * ls * nkv * s.max_blocks));
  APR_RETURN_IF_ERROR(
      Alloc(fill, &cnn_row_r_, int64_t{ms} * ls * nkv * kHistoryRing * s.max_blocks));
  APR_RETURN_IF_ERROR(Alloc(fill, &cnn_count_, int64_t{ms} * ls * nkv));
  APR_RETURN_IF_ERROR(Alloc(fill, &cnn_width_, int64_t{ms} * ls * nkv));
  APR_CUDA_RETURN_IF_ERROR(cudaMemset(cnn_count_.get(), 0x80, cnn_count_.bytes()));
  APR_RETURN_IF_ERROR(Alloc(fill, &cnn_fragments_, kPredictorFragments));
  APR_CUDA_RETURN_IF_ERROR(
      LaunchPackPredictorFragments(predictor_w_.get(), cnn_fragments_.get(), stream));
  cnn_conv1_ = MakePredictorConv1(weights.data());
  APR_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&side_stream_, cudaStreamNonBlocking));
  layer_events_.resize(s.layers);
  for (cudaEvent_t& e : layer_events_)
    APR_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  APR_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&side_done_, cudaEventDisableTiming));
  return absl::OkStatus();
}

// The scores, the saved prefill queries and their scratch, the selection.
absl::Status GpuPredictor::AllocateRest(int fill) {
  const GpuPredictorShape& s = shape_;
  const int ms = s.max_sequences, ls = s.predicted_layers(), nkv = s.kv_heads;
  APR_RETURN_IF_ERROR(Alloc(fill, &scores_, int64_t{ms} * ls * nkv * s.max_blocks));
  APR_RETURN_IF_ERROR(
      Alloc(fill, &q_save_, int64_t{s.layers} * kHistoryRows * s.heads * s.head_dim));
  APR_RETURN_IF_ERROR(Alloc(fill, &history_scratch_, PrefillHistoryScratchFloats(s.heads)));
  sel_stride_ = std::max(s.k_blocks_max, kMinPredictedCandidates - 1);
  APR_RETURN_IF_ERROR(Alloc(fill, &sel_blocks_, int64_t{ms} * ls * nkv * sel_stride_));
  APR_RETURN_IF_ERROR(Alloc(fill, &sel_counts_, int64_t{ms} * ls * nkv));
  APR_RETURN_IF_ERROR(Alloc(fill, &sel_lens_, ms));
  APR_CUDA_RETURN_IF_ERROR(cudaMemset(sel_lens_.get(), 0xff, sel_lens_.bytes()));
  return absl::OkStatus();
}

absl::Status GpuPredictor::PredictFor(const PredictLaunch& p, cudaStream_t stream) {
  APR_RETURN_IF_ERROR(PredictScores(p, stream));
  return SelectTopk(p, stream);
}

// The CNN grid covers `max_cols` candidate columns (narrower images exit early).
absl::Status GpuPredictor::PredictScores(const PredictLaunch& p, cudaStream_t stream) {
  PredictorCnnArgs pc;
  pc.weights = predictor_w_.get();
  pc.fragments = cnn_fragments_.get();
  pc.conv1 = cnn_conv1_;
  pc.layer_begin = p.layer_begin;
  pc.layer_count = p.layer_count;
  pc.batch = p.batch;
  pc.first_layer = shape_.first_layer;
  pc.num_layers = shape_.predicted_layers();
  pc.num_kv_heads = shape_.kv_heads;
  pc.next_lens = in_.next_lens;
  pc.seq_slots = in_.seq_slots;
  pc.history_row = in_.history_row;
  pc.history =
      HistoryView{history_.get(), shape_.layers, shape_.kv_heads, kHistoryRing, shape_.max_blocks};
  if (incremental_) {
    pc.state = CnnState{cnn_interior_.get(), cnn_row_r_.get(), cnn_count_.get(), cnn_width_.get(),
                        shape_.max_blocks};
    pc.history_count = in_.history_count;
  }
  pc.k_blocks = p.k_blocks;
  pc.max_cols = p.max_cols;
  pc.tiles_per_cta = tiles_per_cta_ != 0            ? tiles_per_cta_
                     : p.recompute || !incremental_ ? kRecomputeCnnTilesPerCta
                                                    : kDefaultCnnTilesPerCta;
  pc.scores = scores_.get();
  pc.score_cols = shape_.max_blocks;
  APR_CUDA_RETURN_IF_ERROR(LaunchPredictorCnn(pc, stream));
  return absl::OkStatus();
}

absl::Status GpuPredictor::SelectTopk(const PredictLaunch& p, cudaStream_t stream) {
  TopkArgs tk;
  tk.batch = p.batch;
  tk.layer_begin = p.layer_begin;
  tk.layer_count = p.layer_count;
  tk.num_layers = shape_.predicted_layers();
  tk.num_kv_heads = shape_.kv_heads;
  tk.next_lens = in_.next_lens;
  tk.seq_slots = in_.seq_slots;
  tk.scores = scores_.get();
  tk.score_cols = shape_.max_blocks;
  tk.k_blocks = p.k_blocks;
  tk.query_blocks = p.query_blocks;
  tk.out = SelectionView();
  tk.error = in_.error;
  APR_CUDA_RETURN_IF_ERROR(LaunchTopkSelect(tk, stream));
  return absl::OkStatus();
}

Selection GpuPredictor::SelectionView() const {
  return Selection{sel_blocks_.get(),         sel_counts_.get(), sel_lens_.get(),
                   shape_.predicted_layers(), shape_.kv_heads,   sel_stride_};
}

absl::Status GpuPredictor::InvalidateCnnState(int slot, cudaStream_t stream) {
  const int64_t n = int64_t{shape_.predicted_layers()} * shape_.kv_heads;
  APR_CUDA_RETURN_IF_ERROR(
      cudaMemsetAsync(cnn_count_.get() + slot * n, 0x80, n * sizeof(int32_t), stream));
  return absl::OkStatus();
}

absl::Status GpuPredictor::SetIncremental(bool on) {
  incremental_ = on;
  APR_CUDA_RETURN_IF_ERROR(cudaMemset(cnn_count_.get(), 0x80, cnn_count_.bytes()));
  return absl::OkStatus();
}

absl::Status GpuPredictor::FillRandomHistory(int slot, uint64_t seed, cudaStream_t stream) {
  const int64_t per_seq =
      int64_t{shape_.layers} * shape_.kv_heads * kHistoryRing * shape_.max_blocks;
  APR_CUDA_RETURN_IF_ERROR(
      FillUniformF32(history_.get() + slot * per_seq, per_seq, seed, 0.5f, 0.5f, stream));
  return absl::OkStatus();
}

absl::Status GpuPredictor::SaveQueries(int layer, int64_t row, const float* q, int64_t rows,
                                       cudaStream_t stream) {
  const int64_t q_elems = int64_t{shape_.heads} * shape_.head_dim;
  APR_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(q_save_.get() + (int64_t{layer} * kHistoryRows + row) * q_elems, q,
                      rows * q_elems * sizeof(float), cudaMemcpyDeviceToDevice, stream));
  return absl::OkStatus();
}

absl::Status GpuPredictor::InitHistory(const __nv_bfloat16* pool, const SlotTable& table,
                                       int seq_slot, int rows, int first_pos, bool cuda_cores,
                                       cudaStream_t stream) {
  const int nh = shape_.heads, hd = shape_.head_dim;
  for (int l = shape_.first_layer; l < shape_.layers; ++l) {
    PrefillHistoryArgs ph;
    ph.num_heads = nh;
    ph.num_kv_heads = shape_.kv_heads;
    ph.head_dim = hd;
    ph.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    ph.q = q_save_.get() + int64_t{l} * kHistoryRows * nh * hd;
    ph.rows = rows;
    ph.first_pos = first_pos;
    ph.pool = pool;
    ph.seq_slot = seq_slot;
    ph.table = table;
    ph.layer = l;
    ph.history = history_.get();
    ph.history_layers = shape_.layers;
    ph.history_rows = kHistoryRing;
    ph.history_cols = shape_.max_blocks;
    ph.scratch = history_scratch_.get();
    ph.cuda_cores = cuda_cores;
    APR_CUDA_RETURN_IF_ERROR(LaunchPrefillHistory(ph, stream));
  }
  return absl::OkStatus();
}

absl::Status GpuPredictor::ForkSideStream(int point, cudaStream_t main) {
  APR_CUDA_RETURN_IF_ERROR(cudaEventRecord(layer_events_[point], main));
  APR_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(side_stream_, layer_events_[point], 0));
  return absl::OkStatus();
}

absl::Status GpuPredictor::JoinSideStream(cudaStream_t main) {
  APR_CUDA_RETURN_IF_ERROR(cudaEventRecord(side_done_, side_stream_));
  APR_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(main, side_done_, 0));
  return absl::OkStatus();
}

}  // namespace apr::cuda
