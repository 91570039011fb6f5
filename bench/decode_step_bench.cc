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
#include "backends/cuda/gemm.h"
#include "backends/cuda/gemv.h"
#include "backends/cuda/gemv_mma.h"
#include "backends/cuda/paged_decode_attention.h"
#include "backends/cuda/predictor/predictor_cnn.h"
#include "backends/cuda/predictor/predictor_weights.h"
#include "bench/bench_util.h"
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

// Median time of `reps` launches of `launch` (after 3 warm-ups), ms.
template <typename F>
double TimeKernel(F launch, int reps = 20) {
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  std::vector<double> t;
  for (int i = 0; i < reps + 3; ++i) {
    cudaEventRecord(e0);
    BENCH_CHECK_CUDA(launch());
    cudaEventRecord(e1);
    BENCH_CHECK_CUDA(cudaEventSynchronize(e1));
    float ms;
    cudaEventElapsedTime(&ms, e0, e1);
    if (i >= 3) t.push_back(ms);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return Median(t);
}

// The projections of one layer and lm_head through the GEMV, and one layer's decode
// attention over a dense 32K context and over a 1024-token block list, alone: achieved
// bandwidth against the read probe.
void MicroBenchmarks(const CudaWeights& w, double read_gbps) {
  const ModelConfig& c = w.config();
  const int H = c.hidden_size, I = c.intermediate_size, nh = c.num_attention_heads,
            nkv = c.num_key_value_heads, hd = c.head_dim;
  auto x = DeviceBuffer<__nv_bfloat16>::Allocate(8 * I);
  auto y = DeviceBuffer<float>::Allocate(8 * c.vocab_size);
  auto out = DeviceBuffer<__nv_bfloat16>::Allocate(8 * I);
  BENCH_CHECK_OK(x.status());
  BENCH_CHECK_OK(y.status());
  BENCH_CHECK_OK(out.status());
  BENCH_CHECK_CUDA(FillUniformBf16(x->get(), 8 * I, 3, 1.0f, nullptr));
  const CudaLayerWeights& lw = w.layer(0);
  struct G {
    const char* name;
    const __nv_bfloat16* w;
    int m, k;
    GemvEpilogue e;
  } gemvs[] = {
      {"qkv", lw.qkv, (nh + 2 * nkv) * hd, H, GemvEpilogue::kStore},
      {"o (+residual)", lw.o, H, nh * hd, GemvEpilogue::kAccumulate},
      {"gate_up (+SwiGLU)", lw.gate_up, I, H, GemvEpilogue::kSwiGlu},
      {"down (+residual)", lw.down, H, I, GemvEpilogue::kAccumulate},
      {"lm_head", w.lm_head(), static_cast<int>(c.vocab_size), H, GemvEpilogue::kStore},
  };
  // Each kernel side by side on the same matrix and tokens; cuBLAS (cublasGemmEx, bf16 in,
  // f32 out; gate_up without the SwiGLU pass the decoder adds) for reference.
  auto gemm = Gemm::Create(nullptr);
  BENCH_CHECK_OK(gemm.status());
  auto gu = DeviceBuffer<__nv_bfloat16>::Allocate(int64_t{8} * 2 * I);
  BENCH_CHECK_OK(gu.status());
  struct Kernel {
    const char* name;
    GemvKernel kernel;
    GemvMmaShape shape;  // warps > 0: LaunchGemvMma in this shape; < 0: cuBLAS
  } const kernels[] = {{"CUDA cores", GemvKernel::kCudaCores, {0, 0}},
                       {"tensor 4w x4", GemvKernel::kTensorCores, {4, 4}},
                       {"tensor 8w x8", GemvKernel::kTensorCores, {8, 8}},
                       {"tensor 16w x8", GemvKernel::kTensorCores, {16, 8}},
                       {"cuBLAS", GemvKernel::kAuto, {-1, 0}}};
  std::printf("\nmicro: projections, us and %% of the read probe (bf16 weights, f32 out)\n");
  std::printf("  %-22s %14s", "n  matrix", "m x k");
  for (const Kernel& kn : kernels) std::printf(" %17s", kn.name);
  std::printf("\n");
  for (int n = 1; n <= kGemvMaxTokens; ++n) {
    for (const G& g : gemvs) {
      const bool swiglu = g.e == GemvEpilogue::kSwiGlu;
      const double bytes = 2.0 * (swiglu ? 2 : 1) * g.m * g.k;
      std::printf("  n=%d %-18s %6d x %5d", n, g.name, g.m, g.k);
      for (const Kernel& kn : kernels) {
        GemvArgs a;
        a.w = g.w;
        a.x = x->get();
        a.m = g.m;
        a.k = g.k;
        a.n = n;
        a.epilogue = g.e;
        a.y = y->get();
        a.ldy = g.m;
        a.out = out->get();
        a.kernel = kn.kernel;
        const double ms = TimeKernel([&]() -> cudaError_t {
          if (kn.shape.warps > 0) return LaunchGemvMma(a, kn.shape, nullptr);
          if (kn.shape.warps == 0) return LaunchGemv(a, nullptr);
          const absl::Status st =
              swiglu ? (*gemm)->LinearBf16(g.w, 2 * g.m, g.k, a.x, n, gu->get())
                     : (*gemm)->LinearF32(g.w, g.m, g.k, a.x, n, a.y, g.m,
                                          g.e == GemvEpilogue::kAccumulate ? 1.f : 0.f);
          return st.ok() ? cudaSuccess : cudaErrorUnknown;
        });
        std::printf("  %7.1f us (%3.0f%%)", ms * 1e3, 100 * bytes / (ms * 1e6) / read_gbps);
      }
      std::printf("\n");
    }
  }
  // Attention: one layer, 8 KV heads, context 32768, batch 1 and 8.
  std::printf("micro: paged decode attention, one layer (8 KV heads x 4 query heads, hd 128)\n");
  for (int batch : {1, 8}) {
    const int ctx = 32768, nb = NumBlocks(ctx);
    const int64_t slot_elems = 2 * kBlockTokens * hd;
    auto pool = DeviceBuffer<__nv_bfloat16>::Allocate(int64_t{batch} * nb * nkv * slot_elems);
    BENCH_CHECK_OK(pool.status());
    BENCH_CHECK_CUDA(FillUniformBf16(pool->get(), pool->size(), 5, 1.0f, nullptr));
    std::vector<int32_t> table(int64_t{batch} * nb), lens(batch, ctx), slots_seq(batch);
    for (int b = 0; b < batch; ++b) {
      slots_seq[b] = b;
      for (int i = 0; i < nb; ++i) table[int64_t{b} * nb + i] = b * nb + i;
    }
    auto dtable = DeviceBuffer<int32_t>::Allocate(table.size());
    auto dlens = DeviceBuffer<int32_t>::Allocate(batch);
    auto dslots = DeviceBuffer<int32_t>::Allocate(batch);
    auto q = DeviceBuffer<float>::Allocate(int64_t{batch} * nh * hd);
    auto part_o = DeviceBuffer<float>::Allocate(int64_t{batch} * nh * 128 * hd);
    auto part_ml = DeviceBuffer<float>::Allocate(int64_t{batch} * nh * 128 * 2);
    auto att = DeviceBuffer<__nv_bfloat16>::Allocate(int64_t{batch} * nh * hd);
    BENCH_CHECK_CUDA(
        cudaMemcpy(dtable->get(), table.data(), table.size() * 4, cudaMemcpyHostToDevice));
    BENCH_CHECK_CUDA(cudaMemcpy(dlens->get(), lens.data(), batch * 4, cudaMemcpyHostToDevice));
    BENCH_CHECK_CUDA(
        cudaMemcpy(dslots->get(), slots_seq.data(), batch * 4, cudaMemcpyHostToDevice));
    BENCH_CHECK_CUDA(FillUniformF32(q->get(), q->size(), 6, 1.0f, 0.0f, nullptr));
    // A 1024-token list: sink, 56 blocks spread over the context, local window.
    const int k = PredictedBlocks(1024), stride = MaxListLength(k);
    std::vector<int32_t> counts(batch * nkv), blocks(int64_t{batch} * nkv * stride),
        lslots(blocks.size());
    for (int r = 0; r < batch * nkv; ++r) {
      std::vector<int32_t> l;
      for (int i = 0; i < 4; ++i) l.push_back(i);
      for (int i = 0; i < k; ++i) l.push_back(4 + (i * 37 + r * 11) % (nb - 9));
      std::sort(l.begin() + 4, l.end());
      l.erase(std::unique(l.begin(), l.end()), l.end());
      for (int i = FirstLocalBlock(ctx); i < nb; ++i) l.push_back(i);
      counts[r] = static_cast<int>(l.size());
      for (size_t i = 0; i < l.size(); ++i) {
        blocks[int64_t{r} * stride + i] = l[i];
        lslots[int64_t{r} * stride + i] = (r / nkv * nb + l[i]) * nkv + r % nkv;
      }
    }
    auto dcounts = DeviceBuffer<int32_t>::Allocate(counts.size());
    auto dblocks = DeviceBuffer<int32_t>::Allocate(blocks.size());
    auto dlslots = DeviceBuffer<int32_t>::Allocate(blocks.size());
    BENCH_CHECK_CUDA(
        cudaMemcpy(dcounts->get(), counts.data(), counts.size() * 4, cudaMemcpyHostToDevice));
    BENCH_CHECK_CUDA(
        cudaMemcpy(dblocks->get(), blocks.data(), blocks.size() * 4, cudaMemcpyHostToDevice));
    BENCH_CHECK_CUDA(
        cudaMemcpy(dlslots->get(), lslots.data(), blocks.size() * 4, cudaMemcpyHostToDevice));
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    for (bool sparse : {false, true}) {
      for (int splits : {0, 16, 32, 64, 128}) {
        PagedDecodeArgs a;
        a.batch = batch;
        a.num_heads = nh;
        a.num_kv_heads = nkv;
        a.head_dim = hd;
        a.scale = 0.088f;
        a.q = q->get();
        a.pool = pool->get();
        a.context_lens = dlens->get();
        a.seq_slots = dslots->get();
        a.table = SlotTable{dtable->get(), nb, nkv, nkv};
        a.layer = 0;
        if (sparse)
          a.lists = BlockLists{dcounts->get(), dblocks->get(), dlslots->get(), nullptr, stride};
        a.splits = splits > 0 ? splits
                              : std::min(128, ChooseSplits(batch, nkv, sparse ? stride : nb, sms));
        a.part_o = part_o->get();
        a.part_ml = part_ml->get();
        a.out = att->get();
        const double ms = TimeKernel([&] { return LaunchPagedDecodeAttention(a, nullptr); });
        double entries = 0;
        for (int r = 0; r < batch * nkv; ++r) entries += sparse ? counts[r] : nb;
        const double bytes = entries * slot_elems * 2;
        std::printf("  batch %d %-6s splits %3d%s  %8.1f us  %6.0f GB/s (%.0f%% of read probe)\n",
                    batch, sparse ? "sparse" : "dense", a.splits, splits > 0 ? "" : " (auto)",
                    ms * 1e3, bytes / (ms * 1e6), 100 * bytes / (ms * 1e6) / read_gbps);
      }
    }
  }
  std::printf("\n");
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

int Main() {
  if (absl::GetFlag(FLAGS_offload)) return OffloadMain();
  const std::vector<int> contexts = PositiveInts("contexts", absl::GetFlag(FLAGS_contexts));
  const std::vector<int> batches = PositiveInts("batches", absl::GetFlag(FLAGS_batches));
  const std::vector<int> budgets = PositiveInts("budgets", absl::GetFlag(FLAGS_budgets));
  const std::vector<int> cnn_tiles = PositiveInts("cnn_tiles", absl::GetFlag(FLAGS_cnn_tiles));
  const std::vector<int> prefill_tokens =
      PositiveInts("prefill_tokens", absl::GetFlag(FLAGS_prefill_tokens));
  const std::vector<int> prefill_chunks =
      PositiveInts("prefill_chunks", absl::GetFlag(FLAGS_prefill_chunks));
  if (contexts.empty() && prefill_tokens.empty()) {
    std::fprintf(stderr, "nothing to time: --contexts and --prefill_tokens are both empty\n");
    return 2;
  }
  if (!prefill_tokens.empty() && prefill_chunks.empty()) {
    std::fprintf(stderr, "--prefill_chunks: no chunk size\n");
    return 2;
  }
  for (int t : cnn_tiles) {
    if (!ValidCnnTilesPerCta(t)) {
      std::fprintf(stderr, "--cnn_tiles: %d is not a multiple of 4 in [4, 64]\n", t);
      return 2;
    }
  }
  const int steps = absl::GetFlag(FLAGS_steps), warmup = absl::GetFlag(FLAGS_warmup);
  const int max_budget = budgets.empty() ? 1024 : *std::max_element(budgets.begin(), budgets.end());

  cudaDeviceProp prop;
  BENCH_CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  double read_gbps, copy_gbps;
  MeasureBandwidth(&read_gbps, &copy_gbps);
  std::printf("device: %s, %d SMs, %.1f GiB; HBM read %.0f GB/s, copy (read+write) %.0f GB/s\n",
              prop.name, prop.multiProcessorCount, prop.totalGlobalMem / double(1 << 30), read_gbps,
              copy_gbps);

  // Room for the longest context plus every step the rows below append.
  const int modes = 3 + static_cast<int>(budgets.size()) + 4;
  const int margin = (warmup + steps + 4) * modes + 64;
  // --contexts= (empty) with --prefill_tokens times prefill alone.
  int max_ctx = contexts.empty() ? 0 : *std::max_element(contexts.begin(), contexts.end());
  for (int n : prefill_tokens) max_ctx = std::max(max_ctx, n);
  const ModelConfig cfg = Llama31_8B(max_ctx + margin);
  auto weights = CudaWeights::Random(cfg, 1234);
  BENCH_CHECK_OK(weights.status());
  std::shared_ptr<const CudaWeights> w(std::move(*weights));
  const double weight_bytes = static_cast<double>(w->StepBytes());
  std::printf("weights: %.2f GB on the GPU, %.2f GB read per step\n", w->TotalBytes() / 1e9,
              weight_bytes / 1e9);
  if (absl::GetFlag(FLAGS_micro)) MicroBenchmarks(*w, read_gbps);
  const std::vector<float> pw = RandomPredictorWeights(77);
  const int L = cfg.num_hidden_layers, nkv = cfg.num_key_value_heads, hd = cfg.head_dim;
  const double token_kv_bytes = double(L) * nkv * 2 * hd * 2;  // K and V, bf16, all layers

  std::vector<Row> rows;
  std::vector<TilesRow> tiles_rows;
  for (int batch : batches) {
    for (int ctx : contexts) {
      const int cap = ctx + margin;
      const double pool_bytes = double(batch) * NumBlocks(cap) * L * nkv * 2 * 16 * hd * 2;
      // The history ring and the CNN's kept R (CnnState::row_r), float32 each.
      const double hist_bytes = 2.0 * batch * L * nkv * kHistoryRing * NumBlocks(cap) * 4;
      size_t free_b, total_b;
      BENCH_CHECK_CUDA(cudaMemGetInfo(&free_b, &total_b));
      if (pool_bytes + hist_bytes + (2ull << 30) > free_b) {
        Row r{ctx, batch, "all"};
        r.note = absl::StrFormat("does not fit: KV %.1f GB + weights %.1f GB > %.1f GB",
                                 pool_bytes / 1e9, w->TotalBytes() / 1e9, total_b / 1e9);
        std::printf("ctx %d batch %d: %s\n", ctx, batch, r.note.c_str());
        rows.push_back(r);
        continue;
      }
      CudaDecoderOptions o;
      o.max_sequences = batch;
      o.max_context = cap;
      o.prefill_chunk = 64;
      o.max_budget_tokens = max_budget;
      o.sparse.enabled = false;
      o.sparse.budget_tokens = budgets.empty() ? 1024 : budgets[0];
      o.sparse.calibration_step = 0;
      o.predictor_weights = pw;
      o.predictor_tiles_per_cta = absl::GetFlag(FLAGS_predictor_tiles);
      o.use_pdl = absl::GetFlag(FLAGS_pdl);
      auto dec = CudaDecoder::Create(w, o);
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
      auto add = [&](const std::string& mode, double kv_bytes, double pred_ms, double pred_full_ms,
                     bool sparse, int budget, int cal) {
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
        std::printf("ctx %6d batch %d %-22s step %8.3f ms (wall %8.3f)  floor %8.3f ms  x%.2f%s\n",
                    ctx, batch, mode.c_str(), r.step_ms, r.wall_ms, r.floor_ms,
                    r.step_ms / r.floor_ms,
                    pred_ms >= 0 ? absl::StrFormat("  predictor %.3f ms (%.1f%%)", pred_ms,
                                                   100 * pred_ms / r.step_ms)
                                       .c_str()
                                 : "");
        std::fflush(stdout);
        rows.push_back(r);
      };
      const double dense_kv = double(batch) * ctx * token_kv_bytes;
      add("dense", dense_kv, -1, -1, false, o.sparse.budget_tokens, 0);
      if (absl::GetFlag(FLAGS_cublas_rows)) {
        // The default's alternatives, side by side: no PDL, cuBLAS for every projection, and
        // where the default takes the tensor-core GEMV, the CUDA-core one.
        BENCH_CHECK_OK(CudaDecoderBenchPeer::SetUsePdl(d, false));
        add("dense, GEMV without PDL", dense_kv, -1, -1, false, o.sparse.budget_tokens, 0);
        BENCH_CHECK_OK(CudaDecoderBenchPeer::SetUsePdl(d, true));
        BENCH_CHECK_OK(CudaDecoderBenchPeer::SetUseGemv(d, false));
        add("dense, cuBLAS projections", dense_kv, -1, -1, false, o.sparse.budget_tokens, 0);
        if (batch >= kGemvTensorCoreMinTokens) {
          BENCH_CHECK_OK(
              CudaDecoderBenchPeer::SetUseGemv(d, true, kGemvMaxTokens, GemvKernel::kCudaCores));
          add("dense, CUDA-core GEMV", dense_kv, -1, -1, false, o.sparse.budget_tokens, 0);
        }
        BENCH_CHECK_OK(CudaDecoderBenchPeer::SetUseGemv(d, true, o.gemv_max_tokens, o.gemv_kernel));
      }
      for (int budget : budgets) {
        SparseOptions s = d.sparse();
        s.enabled = true;
        s.budget_tokens = budget;
        s.calibration_step = 0;
        BENCH_CHECK_OK(d.SetSparse(s));
        const double pred_full = TimePredictor(d, seqs, 10, false);
        const double pred = TimePredictor(d, seqs, 10, true);
        const int k = PredictedBlocks(budget);
        const double sparse_kv =
            double(batch) * ListLengthBound(ctx, k) * kBlockTokens * token_kv_bytes;
        // The same steps without predicting (the selection kept): the difference to the rows
        // below is what the predictor adds to a step, side by side.
        BENCH_CHECK_OK(CudaDecoderBenchPeer::SetSkipPrediction(d, true));
        add(absl::StrCat("sparse ", budget, ", no prediction (selection kept)"), sparse_kv, -1, -1,
            true, budget, 0);
        const double no_prediction_ms = rows.back().step_ms;
        BENCH_CHECK_OK(CudaDecoderBenchPeer::SetSkipPrediction(d, false));
        auto add_predicted = [&](const std::string& mode, double pred_ms, double pred_full_ms) {
          add(mode, sparse_kv, pred_ms, pred_full_ms, true, budget, 0);
          rows.back().predictor_in_step_ms = rows.back().step_ms - no_prediction_ms;
        };
        add_predicted(absl::StrCat("sparse ", budget), pred, pred_full);
        if (budget == budgets[0]) {
          for (int tiles : cnn_tiles) {
            BENCH_CHECK_OK(CudaDecoderBenchPeer::SetPredictorTilesPerCta(d, tiles));
            const TilesRow t{ctx, batch, tiles, TimePredictor(d, seqs, 10, true),
                             TimePredictor(d, seqs, 10, false)};
            std::printf(
                "ctx %6d batch %d CNN %2d tiles per CTA: incremental %.3f ms, full %.3f ms\n", ctx,
                batch, tiles, t.incremental_ms, t.full_ms);
            tiles_rows.push_back(t);
          }
          BENCH_CHECK_OK(
              CudaDecoderBenchPeer::SetPredictorTilesPerCta(d, o.predictor_tiles_per_cta));
          // The other stream than the default's for this batch size.
          const bool side_by_default = batch <= o.overlap_predictor_max_batch;
          BENCH_CHECK_OK(
              CudaDecoderBenchPeer::SetOverlapPredictorMaxBatch(d, side_by_default ? 0 : batch));
          add_predicted(absl::StrCat("sparse ", budget, ", predictor on the ",
                                     side_by_default ? "main stream" : "side stream"),
                        pred, pred_full);
          BENCH_CHECK_OK(
              CudaDecoderBenchPeer::SetOverlapPredictorMaxBatch(d, o.overlap_predictor_max_batch));
          BENCH_CHECK_OK(CudaDecoderBenchPeer::SetIncrementalPredictor(d, false));
          add_predicted(absl::StrCat("sparse ", budget, ", full CNN"), pred_full, pred_full);
          BENCH_CHECK_OK(CudaDecoderBenchPeer::SetIncrementalPredictor(d, true));
        }
      }
      // A calibration step: the sparse attention, plus a K-only pass over every block that
      // puts the full attention row into the history.
      const int b0 = budgets.empty() ? 1024 : budgets[0];
      const double cal_kv = double(batch) * ListLengthBound(ctx, PredictedBlocks(b0)) *
                                kBlockTokens * token_kv_bytes +
                            dense_kv / 2;
      add(absl::StrCat("sparse ", b0, ", calibration step"), cal_kv, -1, -1, true, b0, 1);
      owned.clear();
    }
  }

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
  if (!tiles_rows.empty()) {
    table += absl::StrFormat(
        "\nPredictor (CNN + top-k, all layers) by CNN column tiles per CTA (default %d), "
        "sparse %d:\n\n| context | batch | tiles per CTA | incremental (ms) | full CNN (ms) |\n"
        "| ---: | ---: | ---: | ---: | ---: |\n",
        kDefaultCnnTilesPerCta, budgets.empty() ? 0 : budgets[0]);
    for (const TilesRow& t : tiles_rows) {
      table += absl::StrFormat("| %d | %d | %d | %.3f | %.3f |\n", t.context, t.batch, t.tiles,
                               t.incremental_ms, t.full_ms);
    }
  }
  if (!prefill_tokens.empty()) table += PrefillTable(w, pw, prefill_tokens, prefill_chunks);
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
