// The decode step at Llama-3.1-8B geometry with random bf16 weights, the whole KV cache
// resident on the GPU: dense attention vs block-sparse attention at budgets 1024 and 2048
// tokens, next to the bandwidth floor (bytes the step must read over the measured HBM read
// bandwidth). docs/PERFORMANCE.md holds the results and the command.
//
//   decode_step_bench --contexts=4096,32768,131072 --batches=1,8 --steps=30
//   decode_step_bench --offload [--storage_node=PATH]    (the KV-offload table instead,
//                                                          bench/offload_rows.h)
//
// Each row: median device time of one decode step (CUDA events around a graph replay),
// the floor, their ratio, and for sparse rows the predictor's share (CNN + top-k for all
// layers, timed alone). Rows that cannot fit on the GPU say so.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "backends/cuda/block_rules.h"
#include "backends/cuda/cuda_decoder.h"
#include "backends/cuda/cuda_decoder_bench_peer.h"
#include "backends/cuda/device_buffer.h"
#include "backends/cuda/fill.h"
#include "backends/cuda/gemv.h"
#include "backends/cuda/predictor/predictor_cnn.h"
#include "backends/cuda/predictor/predictor_weights.h"
#include "bench/bench_util.h"
#include "bench/decode_step_micro.h"
#include "bench/gpu/sm_reservation.h"
#include "bench/offload_rows.h"

ABSL_FLAG(std::string, contexts, "4096,32768,131072", "context lengths (tokens)");
ABSL_FLAG(std::string, batches, "1,8", "decode batch sizes");
ABSL_FLAG(std::string, budgets, "1024,2048", "sparse budgets (tokens per KV head)");
ABSL_FLAG(int, steps, 30, "timed decode steps per row");
ABSL_FLAG(int, warmup, 5, "untimed steps before each row");
ABSL_FLAG(bool, cublas_rows, true,
          "also time the dense step with the projections' alternatives (no PDL, cuBLAS, and "
          "the CUDA-core GEMV where the default takes the tensor cores)");
ABSL_FLAG(std::string, out, "", "also write the markdown table here");
ABSL_FLAG(bool, micro, true, "first time the GEMV and attention kernels alone");
ABSL_FLAG(std::string, cnn_tiles, "",
          "also time the predictor (incremental and full CNN) at the first budget with these "
          "column tiles per CTA (multiples of 4), side by side; a table of its own");
ABSL_FLAG(int, predictor_tiles, 0,
          "CNN column tiles per CTA for every row (CudaDecoderOptions::predictor_tiles_per_cta; "
          "0: the decoder's default)");
ABSL_FLAG(std::string, prefill_tokens, "",
          "also time Prefill of prompts of these lengths (batch 1, random tokens, sparse "
          "history on): a table of its own");
ABSL_FLAG(std::string, prefill_chunks, "512",
          "prefill chunk sizes (CudaDecoderOptions::prefill_chunk) for the prefill table");
ABSL_FLAG(bool, prefill_cuda_cores, true,
          "the prefill table also times the CUDA-core kernels (attention and the history's "
          "initial rows; first chunk size only)");
ABSL_FLAG(bool, pdl, true,
          "programmatic dependent launch for every row (CudaDecoderOptions::use_pdl)");
ABSL_FLAG(int, reserve_sms, 0,
          "hold this many SMs (whole, bench/gpu/sm_reservation.h) during every timed step and "
          "predictor timing: what the rows cost on the rest of the GPU");
ABSL_FLAG(bool, offload, false,
          "run the KV-offload table ((a) full offload, (b) sparse offload with prefetch, (c) "
          "sparse resident; --offload_* flags, bench/offload_rows.h) instead of this one");

ABSL_DECLARE_FLAG(std::string, offload_contexts);
ABSL_DECLARE_FLAG(std::string, remote_contexts);

namespace apr::cuda {
namespace {

using bench::Llama31_8B;
using bench::Median;
using bench::PositiveInts;

// Read bandwidth (streaming loads over 4 GiB) and copy bandwidth (read + write), GB/s.
void MeasureBandwidth(double* read_gbps, double* copy_gbps) {
  const int64_t bytes = int64_t{4} << 30;
  auto a = DeviceBuffer<char>::Allocate(bytes);
  auto b = DeviceBuffer<char>::Allocate(bytes);
  auto sink = DeviceBuffer<unsigned>::Allocate(1);
  BENCH_CHECK_OK(a.status());
  BENCH_CHECK_OK(b.status());
  BENCH_CHECK_OK(sink.status());
  BENCH_CHECK_CUDA(cudaMemset(a->get(), 1, bytes));
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  std::vector<double> r, c;
  for (int i = 0; i < 12; ++i) {
    cudaEventRecord(e0);
    BENCH_CHECK_CUDA(ReadAll(a->get(), bytes, sink->get(), nullptr));
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float ms;
    cudaEventElapsedTime(&ms, e0, e1);
    if (i >= 2) r.push_back(bytes / (ms * 1e6));
    cudaEventRecord(e0);
    BENCH_CHECK_CUDA(cudaMemcpyAsync(b->get(), a->get(), bytes, cudaMemcpyDeviceToDevice));
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    cudaEventElapsedTime(&ms, e0, e1);
    if (i >= 2) c.push_back(2.0 * bytes / (ms * 1e6));
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  *read_gbps = Median(r);
  *copy_gbps = Median(c);
}

struct Row {
  int context, batch;
  std::string mode;
  double step_ms = 0, wall_ms = 0, floor_ms = 0, predictor_ms = -1, predictor_full_ms = -1,
         kv_gb = 0;
  // This step minus the same step keeping the previous selection (no CNN, no top-k),
  // measured next to each other: what the predictor adds to the step.
  std::optional<double> predictor_in_step_ms;
  std::string note;
};

// The predictor alone at one CNN launch shape (--cnn_tiles).
struct TilesRow {
  int context, batch, tiles;
  double incremental_ms, full_ms;
};

// Times `steps` decode steps (after `warmup`), returning the median device time per step
// and the median wall time per step (host loop with synchronisation).
void TimeSteps(CudaDecoder& d, std::vector<Sequence*>& seqs, int warmup, int steps,
               double* device_ms, double* wall_ms) {
  std::vector<int32_t> tokens(seqs.size());
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(1000 + 7 * i);
  std::vector<cudaEvent_t> ev(2 * steps);
  for (cudaEvent_t& e : ev) BENCH_CHECK_CUDA(cudaEventCreate(&e));
  for (int i = 0; i < warmup; ++i) BENCH_CHECK_OK(d.DecodeStepAsync(seqs, tokens));
  BENCH_CHECK_OK(d.Synchronize());
  bench::SmReservation held;
  BENCH_CHECK_CUDA(held.Hold(absl::GetFlag(FLAGS_reserve_sms)));
  std::vector<double> wall;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) {
    BENCH_CHECK_OK(d.DecodeStepAsync(seqs, tokens, ev[2 * i], ev[2 * i + 1]));
    BENCH_CHECK_OK(d.Synchronize());
    const auto t1 = std::chrono::steady_clock::now();
    wall.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    t0 = t1;
  }
  BENCH_CHECK_CUDA(held.Release());
  std::vector<double> dev;
  for (int i = 0; i < steps; ++i) {
    float ms;
    BENCH_CHECK_CUDA(cudaEventElapsedTime(&ms, ev[2 * i], ev[2 * i + 1]));
    dev.push_back(ms);
  }
  for (cudaEvent_t e : ev) cudaEventDestroy(e);
  *device_ms = Median(dev);
  *wall_ms = Median(wall);
}

double TimePredictor(CudaDecoder& d, std::vector<Sequence*>& seqs, int reps, bool incremental) {
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  std::vector<double> t;
  bench::SmReservation held;
  for (int i = 0; i < reps + 2; ++i) {
    BENCH_CHECK_OK(d.Synchronize());
    // After two untimed calls (graph capture): the SMs are held from then on.
    if (i == 2) BENCH_CHECK_CUDA(held.Hold(absl::GetFlag(FLAGS_reserve_sms)));
    cudaEventRecord(e0, d.stream());
    BENCH_CHECK_OK(CudaDecoderBenchPeer::PredictAsync(d, seqs, /*advance_window=*/incremental));
    cudaEventRecord(e1, d.stream());
    BENCH_CHECK_OK(d.Synchronize());
    float ms;
    cudaEventElapsedTime(&ms, e0, e1);
    if (i >= 2) t.push_back(ms);
  }
  BENCH_CHECK_CUDA(held.Release());
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return Median(t);
}

int OffloadMain() {
  cudaDeviceProp prop;
  BENCH_CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::vector<int> ctxs = PositiveInts("offload_contexts", absl::GetFlag(FLAGS_offload_contexts));
  for (int c : PositiveInts("remote_contexts", absl::GetFlag(FLAGS_remote_contexts)))
    ctxs.push_back(c);
  const int max_ctx = ctxs.empty() ? 32768 : *std::max_element(ctxs.begin(), ctxs.end());
  const ModelConfig cfg = Llama31_8B(max_ctx + 4096);
  auto weights = CudaWeights::Random(cfg, 1234);
  BENCH_CHECK_OK(weights.status());
  std::shared_ptr<const CudaWeights> w(std::move(*weights));
  std::printf("device: %s, %d SMs, %.1f GiB; weights %.2f GB, read per step %.2f GB\n", prop.name,
              prop.multiProcessorCount, prop.totalGlobalMem / double(1 << 30),
              w->TotalBytes() / 1e9, w->StepBytes() / 1e9);
  RunOffloadRows(w, absl::StrFormat("device: %s (%d SMs)\n\n", prop.name, prop.multiProcessorCount),
                 absl::GetFlag(FLAGS_out));
  return 0;
}

// Prefill of one random prompt per length and chunk size, timed from the call to the
// synchronised end (the history's initial rows included), after an untimed 512-token
// prefill that warms the kernels up.
std::string PrefillTable(std::shared_ptr<const CudaWeights> w, const std::vector<float>& pw,
                         const std::vector<int>& lengths, const std::vector<int>& chunks) {
  std::string table =
      "\nPrefill, batch 1, one prompt (ms from the call to the end; sparse history on), by "
      "chunk size, attention and history rows on the tensor cores (the default) and on the CUDA "
      "cores:\n\n"
      "| prompt tokens | chunk | attention | prefill (ms) | tokens/s |\n"
      "| ---: | ---: | --- | ---: | ---: |\n";
  for (int n : lengths)
    for (int chunk : chunks)
      for (bool cuda_cores : {false, true}) {
        if (cuda_cores && (chunk != chunks[0] || !absl::GetFlag(FLAGS_prefill_cuda_cores)))
          continue;
        CudaDecoderOptions o;
        o.prefill_cuda_cores = cuda_cores;
        o.prefill_chunk = chunk;
        o.max_sequences = 1;
        o.max_context = n + 64;
        o.sparse.enabled = true;
        o.predictor_weights = pw;
        auto dec = CudaDecoder::Create(w, o);
        BENCH_CHECK_OK(dec.status());
        CudaDecoder& d = **dec;
        std::mt19937 rng(7 + n);
        std::uniform_int_distribution<int32_t> tok(0, w->config().vocab_size - 1);
        std::vector<int32_t> tokens(n);
        for (int32_t& t : tokens) t = tok(rng);
        std::vector<float> logits;
        {
          auto warm = d.NewSequence();
          BENCH_CHECK_OK(
              d.Prefill(*warm, absl::MakeConstSpan(tokens).subspan(0, std::min(n, 512)), &logits));
          BENCH_CHECK_OK(d.Synchronize());
        }
        auto seq = d.NewSequence();
        const auto t0 = std::chrono::steady_clock::now();
        BENCH_CHECK_OK(d.Prefill(*seq, tokens, &logits));
        BENCH_CHECK_OK(d.Synchronize());
        const double ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count();
        const char* kind = cuda_cores ? "CUDA cores" : "tensor cores";
        std::printf("prefill %6d tokens, chunk %5d, %s: %.1f ms (%.0f tokens/s)\n", n, chunk, kind,
                    ms, n * 1000.0 / ms);
        std::fflush(stdout);
        table += absl::StrFormat("| %d | %d | %s | %.1f | %.0f |\n", n, chunk, kind, ms,
                                 n * 1000.0 / ms);
      }
  return table;
}

// The step table's flags, parsed and checked.
struct StepOptions {
  std::vector<int> contexts, batches, budgets, cnn_tiles, prefill_tokens, prefill_chunks;
  int steps = 0, warmup = 0, max_budget = 0;
};

// Parses the flags into `opt`; false, having said why on stderr, when they leave nothing to
// time or are invalid.
bool ParseStepOptions(StepOptions* opt) {
  opt->contexts = PositiveInts("contexts", absl::GetFlag(FLAGS_contexts));
  opt->batches = PositiveInts("batches", absl::GetFlag(FLAGS_batches));
  opt->budgets = PositiveInts("budgets", absl::GetFlag(FLAGS_budgets));
  opt->cnn_tiles = PositiveInts("cnn_tiles", absl::GetFlag(FLAGS_cnn_tiles));
  opt->prefill_tokens = PositiveInts("prefill_tokens", absl::GetFlag(FLAGS_prefill_tokens));
  opt->prefill_chunks = PositiveInts("prefill_chunks", absl::GetFlag(FLAGS_prefill_chunks));
  if (opt->contexts.empty() && opt->prefill_tokens.empty()) {
    std::fprintf(stderr, "nothing to time: --contexts and --prefill_tokens are both empty\n");
    return false;
  }
  if (!opt->prefill_tokens.empty() && opt->prefill_chunks.empty()) {
    std::fprintf(stderr, "--prefill_chunks: no chunk size\n");
    return false;
  }
  for (int t : opt->cnn_tiles) {
    if (!ValidCnnTilesPerCta(t)) {
      std::fprintf(stderr, "--cnn_tiles: %d is not a multiple of 4 in [4, 64]\n", t);
      return false;
    }
  }
  opt->steps = absl::GetFlag(FLAGS_steps);
  opt->warmup = absl::GetFlag(FLAGS_warmup);
  const std::vector<int>& budgets = opt->budgets;
  opt->max_budget = budgets.empty() ? 1024 : *std::max_element(budgets.begin(), budgets.end());
  return true;
}

// What every (context, batch) of the step table shares.
struct StepSetup {
  std::shared_ptr<const CudaWeights> w;
  std::vector<float> pw;  // the predictor's weights
  int margin = 0;         // cache room past the context for the steps the rows append
  int layers = 0, kv_heads = 0, head_dim = 0;
  double read_gbps = 0, weight_bytes = 0, token_kv_bytes = 0;
};

// The row saying why (ctx, batch) is skipped, printed too, when its KV pool and history
// would not fit in the free GPU memory; nullopt when they fit.
std::optional<Row> DoesNotFitRow(const StepSetup& s, int ctx, int batch, int cap) {
  const int L = s.layers, nkv = s.kv_heads, hd = s.head_dim;
  const double pool_bytes = double(batch) * NumBlocks(cap) * L * nkv * 2 * 16 * hd * 2;
  // The history ring and the CNN's kept R (CnnState::row_r), float32 each.
  const double hist_bytes = 2.0 * batch * L * nkv * kHistoryRing * NumBlocks(cap) * 4;
  size_t free_b, total_b;
  BENCH_CHECK_CUDA(cudaMemGetInfo(&free_b, &total_b));
  if (pool_bytes + hist_bytes + (2ull << 30) > free_b) {
    Row r{ctx, batch, "all"};
    r.note = absl::StrFormat("does not fit: KV %.1f GB + weights %.1f GB > %.1f GB",
                             pool_bytes / 1e9, s.w->TotalBytes() / 1e9, total_b / 1e9);
    std::printf("ctx %d batch %d: %s\n", ctx, batch, r.note.c_str());
    return r;
  }
  return std::nullopt;
}

// The decoder options of the step table's rows at `batch` sequences of up to `cap` tokens.
CudaDecoderOptions StepDecoderOptions(const StepOptions& opt, const StepSetup& s, int batch,
                                      int cap) {
  CudaDecoderOptions o;
  o.max_sequences = batch;
  o.max_context = cap;
  o.prefill_chunk = 64;
  o.max_budget_tokens = opt.max_budget;
  o.sparse.enabled = false;
  o.sparse.budget_tokens = opt.budgets.empty() ? 1024 : opt.budgets[0];
  o.sparse.calibration_step = 0;
  o.predictor_weights = s.pw;
  o.predictor_tiles_per_cta = absl::GetFlag(FLAGS_predictor_tiles);
  o.use_pdl = absl::GetFlag(FLAGS_pdl);
  return o;
}

// One decoder at one (context, batch) with its sequences, and what timing a row of it needs.
struct RowTimer {
  CudaDecoder& d;
  std::vector<Sequence*>& seqs;
  int ctx, batch, warmup, steps;
  double weight_bytes, read_gbps;
  std::vector<Row>* rows;

  // Times a row in mode `mode` (sparse or not, at `budget`, calibration step `cal`), prints
  // it and appends it to `rows`; the step reads `kv_bytes` of KV.
  void Add(const std::string& mode, double kv_bytes, double pred_ms, double pred_full_ms,
           bool sparse, int budget, int cal) const {
    SparseOptions s = d.sparse();
    s.enabled = sparse;
    s.budget_tokens = budget;
    s.calibration_step = cal;
    BENCH_CHECK_OK(d.SetSparse(s));
    if (sparse) {
      BENCH_CHECK_OK(CudaDecoderBenchPeer::PredictAsync(d, seqs));
      BENCH_CHECK_OK(d.Synchronize());
    }
    Row r{ctx, batch, mode};
    TimeSteps(d, seqs, warmup, steps, &r.step_ms, &r.wall_ms);
    r.kv_gb = kv_bytes / 1e9;
    r.floor_ms = (weight_bytes + kv_bytes) / (read_gbps * 1e6);
    r.predictor_ms = pred_ms;
    r.predictor_full_ms = pred_full_ms;
    std::printf("ctx %6d batch %d %-22s step %8.3f ms (wall %8.3f)  floor %8.3f ms  x%.2f%s\n", ctx,
                batch, mode.c_str(), r.step_ms, r.wall_ms, r.floor_ms, r.step_ms / r.floor_ms,
                pred_ms >= 0 ? absl::StrFormat("  predictor %.3f ms (%.1f%%)", pred_ms,
                                               100 * pred_ms / r.step_ms)
                                   .c_str()
                             : "");
    std::fflush(stdout);
    rows->push_back(r);
  }

  // A predicted sparse row at `budget`, with what the predictor adds to its step: its step
  // minus `no_prediction_ms`, the same step keeping the previous selection.
  void AddPredicted(const std::string& mode, double sparse_kv, double pred_ms, double pred_full_ms,
                    int budget, double no_prediction_ms) const {
    Add(mode, sparse_kv, pred_ms, pred_full_ms, true, budget, 0);
    rows->back().predictor_in_step_ms = rows->back().step_ms - no_prediction_ms;
  }
};

// The dense rows: the default, then (--cublas_rows) its alternatives side by side.
void DenseRows(const RowTimer& t, const CudaDecoderOptions& o, double dense_kv) {
  CudaDecoder& d = t.d;
  t.Add("dense", dense_kv, -1, -1, false, o.sparse.budget_tokens, 0);
  if (absl::GetFlag(FLAGS_cublas_rows)) {
    // The default's alternatives, side by side: no PDL, cuBLAS for every projection, and
    // where the default takes the tensor-core GEMV, the CUDA-core one.
    BENCH_CHECK_OK(CudaDecoderBenchPeer::SetUsePdl(d, false));
    t.Add("dense, GEMV without PDL", dense_kv, -1, -1, false, o.sparse.budget_tokens, 0);
    BENCH_CHECK_OK(CudaDecoderBenchPeer::SetUsePdl(d, true));
    BENCH_CHECK_OK(CudaDecoderBenchPeer::SetUseGemv(d, false));
    t.Add("dense, cuBLAS projections", dense_kv, -1, -1, false, o.sparse.budget_tokens, 0);
    if (t.batch >= kGemvTensorCoreMinTokens) {
      BENCH_CHECK_OK(
          CudaDecoderBenchPeer::SetUseGemv(d, true, kGemvMaxTokens, GemvKernel::kCudaCores));
      t.Add("dense, CUDA-core GEMV", dense_kv, -1, -1, false, o.sparse.budget_tokens, 0);
    }
    BENCH_CHECK_OK(CudaDecoderBenchPeer::SetUseGemv(d, true, o.gemv_max_tokens, o.gemv_kernel));
  }
}

// The predictor alone at each of --cnn_tiles column tiles per CTA (the decoder's sparse
// options already set), then the decoder's own tiles again.
void CnnTilesRows(const RowTimer& t, const std::vector<int>& cnn_tiles, const CudaDecoderOptions& o,
                  std::vector<TilesRow>* tiles_rows) {
  CudaDecoder& d = t.d;
  for (int tiles : cnn_tiles) {
    BENCH_CHECK_OK(CudaDecoderBenchPeer::SetPredictorTilesPerCta(d, tiles));
    const TilesRow r{t.ctx, t.batch, tiles, TimePredictor(d, t.seqs, 10, true),
                     TimePredictor(d, t.seqs, 10, false)};
    std::printf("ctx %6d batch %d CNN %2d tiles per CTA: incremental %.3f ms, full %.3f ms\n",
                t.ctx, t.batch, tiles, r.incremental_ms, r.full_ms);
    tiles_rows->push_back(r);
  }
  BENCH_CHECK_OK(CudaDecoderBenchPeer::SetPredictorTilesPerCta(d, o.predictor_tiles_per_cta));
}

// The sparse rows at `budget`: without prediction, predicted, and at the first budget the
// CNN tiles, the predictor on the other stream and the full CNN.
void SparseRows(const RowTimer& t, const StepOptions& opt, const CudaDecoderOptions& o,
                double token_kv_bytes, int budget, std::vector<TilesRow>* tiles_rows) {
  CudaDecoder& d = t.d;
  SparseOptions s = d.sparse();
  s.enabled = true;
  s.budget_tokens = budget;
  s.calibration_step = 0;
  BENCH_CHECK_OK(d.SetSparse(s));
  const double pred_full = TimePredictor(d, t.seqs, 10, false);
  const double pred = TimePredictor(d, t.seqs, 10, true);
  const int k = PredictedBlocks(budget);
  const double sparse_kv =
      double(t.batch) * ListLengthBound(t.ctx, k) * kBlockTokens * token_kv_bytes;
  // The same steps without predicting (the selection kept): the difference to the rows
  // below is what the predictor adds to a step, side by side.
  BENCH_CHECK_OK(CudaDecoderBenchPeer::SetSkipPrediction(d, true));
  t.Add(absl::StrCat("sparse ", budget, ", no prediction (selection kept)"), sparse_kv, -1, -1,
        true, budget, 0);
  const double no_prediction_ms = t.rows->back().step_ms;
  BENCH_CHECK_OK(CudaDecoderBenchPeer::SetSkipPrediction(d, false));
  t.AddPredicted(absl::StrCat("sparse ", budget), sparse_kv, pred, pred_full, budget,
                 no_prediction_ms);
  if (budget == opt.budgets[0]) {
    CnnTilesRows(t, opt.cnn_tiles, o, tiles_rows);
    // The other stream than the default's for this batch size.
    const bool side_by_default = t.batch <= o.overlap_predictor_max_batch;
    BENCH_CHECK_OK(
        CudaDecoderBenchPeer::SetOverlapPredictorMaxBatch(d, side_by_default ? 0 : t.batch));
    t.AddPredicted(absl::StrCat("sparse ", budget, ", predictor on the ",
                                side_by_default ? "main stream" : "side stream"),
                   sparse_kv, pred, pred_full, budget, no_prediction_ms);
    BENCH_CHECK_OK(
        CudaDecoderBenchPeer::SetOverlapPredictorMaxBatch(d, o.overlap_predictor_max_batch));
    BENCH_CHECK_OK(CudaDecoderBenchPeer::SetIncrementalPredictor(d, false));
    t.AddPredicted(absl::StrCat("sparse ", budget, ", full CNN"), sparse_kv, pred_full, pred_full,
                   budget, no_prediction_ms);
    BENCH_CHECK_OK(CudaDecoderBenchPeer::SetIncrementalPredictor(d, true));
  }
}

// Every row of one (context, batch), appended to `rows` and `tiles_rows`: dense, each
// budget's sparse rows and a calibration step, or one row saying it does not fit.
void ContextRows(const StepOptions& opt, const StepSetup& s, int ctx, int batch,
                 std::vector<Row>* rows, std::vector<TilesRow>* tiles_rows) {
  const int cap = ctx + s.margin;
  if (std::optional<Row> r = DoesNotFitRow(s, ctx, batch, cap)) {
    rows->push_back(*r);
    return;
  }
  const CudaDecoderOptions o = StepDecoderOptions(opt, s, batch, cap);
  auto dec = CudaDecoder::Create(s.w, o);
  BENCH_CHECK_OK(dec.status());
  CudaDecoder& d = **dec;
  BENCH_CHECK_OK(CudaDecoderBenchPeer::FillPoolRandom(d, 99));
  std::vector<std::unique_ptr<Sequence>> owned;
  std::vector<Sequence*> seqs;
  for (int b = 0; b < batch; ++b) {
    owned.push_back(d.NewSequence());
    seqs.push_back(owned.back().get());
    BENCH_CHECK_OK(CudaDecoderBenchPeer::FillRandomContext(d, *owned.back(), ctx, 500 + b));
  }
  const RowTimer t{d, seqs, ctx, batch, opt.warmup, opt.steps, s.weight_bytes, s.read_gbps, rows};
  const double dense_kv = double(batch) * ctx * s.token_kv_bytes;
  DenseRows(t, o, dense_kv);
  for (int budget : opt.budgets) SparseRows(t, opt, o, s.token_kv_bytes, budget, tiles_rows);
  // A calibration step: the sparse attention, plus a K-only pass over every block that
  // puts the full attention row into the history.
  const int b0 = opt.budgets.empty() ? 1024 : opt.budgets[0];
  const double cal_kv =
      double(batch) * ListLengthBound(ctx, PredictedBlocks(b0)) * kBlockTokens * s.token_kv_bytes +
      dense_kv / 2;
  t.Add(absl::StrCat("sparse ", b0, ", calibration step"), cal_kv, -1, -1, true, b0, 1);
  owned.clear();
}

// The step table in markdown, under a line on the device and the probe.
std::string StepTable(const cudaDeviceProp& prop, double read_gbps, double copy_gbps,
                      double weight_bytes, const std::vector<Row>& rows) {
  std::string table = absl::StrFormat(
      "device: %s (%d SMs); HBM read %.0f GB/s, copy %.0f GB/s (read+write); weights read per "
      "step %.2f GB%s\n\n",
      prop.name, prop.multiProcessorCount, read_gbps, copy_gbps, weight_bytes / 1e9,
      absl::GetFlag(FLAGS_reserve_sms) > 0
          ? absl::StrFormat("; timed with %d SMs held (--reserve_sms)",
                            absl::GetFlag(FLAGS_reserve_sms))
          : std::string());
  table +=
      "| context | batch | attention | KV read (GB) | step (ms) | floor (ms) | step/floor | "
      "predictor in step (ms, % of step) | predictor alone (ms, % of step) | "
      "predictor alone, full CNN (ms) | tokens/s (wall) |\n";
  table += "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  for (const Row& r : rows) {
    if (!r.note.empty()) {
      table += absl::StrFormat("| %d | %d | %s | | | | | | | | |\n", r.context, r.batch, r.note);
      continue;
    }
    table += absl::StrFormat(
        "| %d | %d | %s | %.3f | %.3f | %.3f | %.2f | %s | %s | %s | %.0f |\n", r.context, r.batch,
        r.mode, r.kv_gb, r.step_ms, r.floor_ms, r.step_ms / r.floor_ms,
        r.predictor_in_step_ms.has_value()
            ? absl::StrFormat("%.3f (%.1f%%)", *r.predictor_in_step_ms,
                              100 * *r.predictor_in_step_ms / r.step_ms)
            : std::string("-"),
        r.predictor_ms >= 0
            ? absl::StrFormat("%.3f (%.1f%%)", r.predictor_ms, 100 * r.predictor_ms / r.step_ms)
            : std::string("-"),
        r.predictor_full_ms >= 0 ? absl::StrFormat("%.3f", r.predictor_full_ms) : std::string("-"),
        r.batch * 1000.0 / r.wall_ms);
  }
  return table;
}

// The --cnn_tiles table in markdown; empty without its rows.
std::string TilesTable(const std::vector<TilesRow>& tiles_rows, const std::vector<int>& budgets) {
  if (tiles_rows.empty()) return "";
  std::string table = absl::StrFormat(
      "\nPredictor (CNN + top-k, all layers) by CNN column tiles per CTA (default %d), "
      "sparse %d:\n\n| context | batch | tiles per CTA | incremental (ms) | full CNN (ms) |\n"
      "| ---: | ---: | ---: | ---: | ---: |\n",
      kDefaultCnnTilesPerCta, budgets.empty() ? 0 : budgets[0]);
  for (const TilesRow& t : tiles_rows) {
    table += absl::StrFormat("| %d | %d | %d | %.3f | %.3f |\n", t.context, t.batch, t.tiles,
                             t.incremental_ms, t.full_ms);
  }
  return table;
}

int Main() {
  if (absl::GetFlag(FLAGS_offload)) return OffloadMain();
  StepOptions opt;
  if (!ParseStepOptions(&opt)) return 2;

  cudaDeviceProp prop;
  BENCH_CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  double read_gbps, copy_gbps;
  MeasureBandwidth(&read_gbps, &copy_gbps);
  std::printf("device: %s, %d SMs, %.1f GiB; HBM read %.0f GB/s, copy (read+write) %.0f GB/s\n",
              prop.name, prop.multiProcessorCount, prop.totalGlobalMem / double(1 << 30), read_gbps,
              copy_gbps);

  StepSetup s;
  // Room for the longest context plus every step the rows below append.
  const int modes = 3 + static_cast<int>(opt.budgets.size()) + 4;
  s.margin = (opt.warmup + opt.steps + 4) * modes + 64;
  // --contexts= (empty) with --prefill_tokens times prefill alone.
  const std::vector<int>& contexts = opt.contexts;
  int max_ctx = contexts.empty() ? 0 : *std::max_element(contexts.begin(), contexts.end());
  for (int n : opt.prefill_tokens) max_ctx = std::max(max_ctx, n);
  const ModelConfig cfg = Llama31_8B(max_ctx + s.margin);
  auto weights = CudaWeights::Random(cfg, 1234);
  BENCH_CHECK_OK(weights.status());
  s.w = std::shared_ptr<const CudaWeights>(std::move(*weights));
  s.weight_bytes = static_cast<double>(s.w->StepBytes());
  std::printf("weights: %.2f GB on the GPU, %.2f GB read per step\n", s.w->TotalBytes() / 1e9,
              s.weight_bytes / 1e9);
  if (absl::GetFlag(FLAGS_micro)) MicroBenchmarks(*s.w, read_gbps);
  s.pw = RandomPredictorWeights(77);
  s.layers = cfg.num_hidden_layers;
  s.kv_heads = cfg.num_key_value_heads;
  s.head_dim = cfg.head_dim;
  // K and V, bf16, all layers.
  s.token_kv_bytes = double(s.layers) * s.kv_heads * 2 * s.head_dim * 2;
  s.read_gbps = read_gbps;

  std::vector<Row> rows;
  std::vector<TilesRow> tiles_rows;
  for (int batch : opt.batches) {
    for (int ctx : contexts) ContextRows(opt, s, ctx, batch, &rows, &tiles_rows);
  }
  std::string table = StepTable(prop, read_gbps, copy_gbps, s.weight_bytes, rows);
  table += TilesTable(tiles_rows, opt.budgets);
  if (!opt.prefill_tokens.empty()) {
    table += PrefillTable(s.w, s.pw, opt.prefill_tokens, opt.prefill_chunks);
  }
  std::printf("\n%s", table.c_str());
  if (const std::string out = absl::GetFlag(FLAGS_out); !out.empty()) {
    std::ofstream(out) << table;
  }
  return 0;
}

}  // namespace
}  // namespace apr::cuda

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return apr::cuda::Main();
}
