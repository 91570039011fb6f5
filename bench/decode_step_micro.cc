#include "bench/decode_step_micro.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "backends/cuda/block_rules.h"
#include "backends/cuda/device_buffer.h"
#include "backends/cuda/fill.h"
#include "backends/cuda/gemm.h"
#include "backends/cuda/gemv.h"
#include "backends/cuda/gemv_mma.h"
#include "backends/cuda/paged_decode_attention.h"
#include "bench/bench_util.h"

namespace apr::cuda {
namespace {

using bench::Median;

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

// One projection of the micro-benchmarks: a matrix of layer 0 (or lm_head) and its epilogue.
struct MicroGemv {
  const char* name;
  const __nv_bfloat16* w;
  int m, k;
  GemvEpilogue e;
};

// One way to run a projection.
struct MicroKernel {
  const char* name;
  GemvKernel kernel;
  GemvMmaShape shape;  // warps > 0: LaunchGemvMma in this shape; < 0: cuBLAS
};

// What every projection of the micro-benchmarks shares: the input tokens, the outputs, and
// cuBLAS with its bf16 output for gate_up.
struct MicroGemvBuffers {
  const __nv_bfloat16* x;
  float* y;
  __nv_bfloat16* out;
  Gemm* gemm;
  __nv_bfloat16* gu;
};

// Median time of projection `g` for `n` tokens through kernel `kn`, ms.
double TimeProjection(const MicroGemv& g, const MicroKernel& kn, int n, const MicroGemvBuffers& b) {
  const bool swiglu = g.e == GemvEpilogue::kSwiGlu;
  GemvArgs a;
  a.w = g.w;
  a.x = b.x;
  a.m = g.m;
  a.k = g.k;
  a.n = n;
  a.epilogue = g.e;
  a.y = b.y;
  a.ldy = g.m;
  a.out = b.out;
  a.kernel = kn.kernel;
  return TimeKernel([&]() -> cudaError_t {
    if (kn.shape.warps > 0) return LaunchGemvMma(a, kn.shape, nullptr);
    if (kn.shape.warps == 0) return LaunchGemv(a, nullptr);
    const absl::Status st = swiglu
                                ? b.gemm->LinearBf16(g.w, 2 * g.m, g.k, a.x, n, b.gu)
                                : b.gemm->LinearF32(g.w, g.m, g.k, a.x, n, a.y, g.m,
                                                    g.e == GemvEpilogue::kAccumulate ? 1.f : 0.f);
    return st.ok() ? cudaSuccess : cudaErrorUnknown;
  });
}

// The projections of one layer and lm_head through each kernel side by side, for 1 to
// kGemvMaxTokens tokens: time and achieved bandwidth against the read probe.
void MicroProjections(const CudaWeights& w, const MicroGemvBuffers& b, double read_gbps) {
  const ModelConfig& c = w.config();
  const int H = c.hidden_size, I = c.intermediate_size, nh = c.num_attention_heads,
            nkv = c.num_key_value_heads, hd = c.head_dim;
  const CudaLayerWeights& lw = w.layer(0);
  const MicroGemv gemvs[] = {
      {"qkv", lw.qkv, (nh + 2 * nkv) * hd, H, GemvEpilogue::kStore},
      {"o (+residual)", lw.o, H, nh * hd, GemvEpilogue::kAccumulate},
      {"gate_up (+SwiGLU)", lw.gate_up, I, H, GemvEpilogue::kSwiGlu},
      {"down (+residual)", lw.down, H, I, GemvEpilogue::kAccumulate},
      {"lm_head", w.lm_head(), static_cast<int>(c.vocab_size), H, GemvEpilogue::kStore},
  };
  const MicroKernel kernels[] = {{"CUDA cores", GemvKernel::kCudaCores, {0, 0}},
                                 {"tensor 4w x4", GemvKernel::kTensorCores, {4, 4}},
                                 {"tensor 8w x8", GemvKernel::kTensorCores, {8, 8}},
                                 {"tensor 16w x8", GemvKernel::kTensorCores, {16, 8}},
                                 {"cuBLAS", GemvKernel::kAuto, {-1, 0}}};
  std::printf("\nmicro: projections, us and %% of the read probe (bf16 weights, f32 out)\n");
  std::printf("  %-22s %14s", "n  matrix", "m x k");
  for (const MicroKernel& kn : kernels) std::printf(" %17s", kn.name);
  std::printf("\n");
  for (int n = 1; n <= kGemvMaxTokens; ++n) {
    for (const MicroGemv& g : gemvs) {
      const bool swiglu = g.e == GemvEpilogue::kSwiGlu;
      const double bytes = 2.0 * (swiglu ? 2 : 1) * g.m * g.k;
      std::printf("  n=%d %-18s %6d x %5d", n, g.name, g.m, g.k);
      for (const MicroKernel& kn : kernels) {
        const double ms = TimeProjection(g, kn, n, b);
        std::printf("  %7.1f us (%3.0f%%)", ms * 1e3, 100 * bytes / (ms * 1e6) / read_gbps);
      }
      std::printf("\n");
    }
  }
}

// Host block lists of the attention micro-benchmark, one per (sequence, KV head) row.
struct MicroLists {
  int stride;
  std::vector<int32_t> counts, blocks, slots;
};

// A 1024-token list per row: sink, 56 blocks spread over the context, local window; with
// each block's slot in a pool that holds `nb` blocks per sequence.
MicroLists MicroBlockLists(int batch, int nkv, int nb, int ctx) {
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
  return {stride, std::move(counts), std::move(blocks), std::move(lslots)};
}

// Times the attention kernel of `dense` over every block (`nb` per row) and over `lists`
// (`counts` entries per row), at the chosen split count (0) and at 16 to 128; a line each.
void TimeMicroAttention(const PagedDecodeArgs& dense, const BlockLists& lists,
                        const std::vector<int32_t>& counts, int nb, int64_t slot_elems,
                        double read_gbps) {
  const int batch = dense.batch, nkv = dense.num_kv_heads, stride = lists.stride;
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  for (bool sparse : {false, true}) {
    for (int splits : {0, 16, 32, 64, 128}) {
      PagedDecodeArgs a = dense;
      if (sparse) a.lists = lists;
      a.splits =
          splits > 0 ? splits : std::min(128, ChooseSplits(batch, nkv, sparse ? stride : nb, sms));
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

// One layer's decode attention at context 32768 and `batch` sequences, dense and over a
// 1024-token block list per row (TimeMicroAttention).
void MicroAttention(const ModelConfig& c, int batch, double read_gbps) {
  const int nh = c.num_attention_heads, nkv = c.num_key_value_heads, hd = c.head_dim;
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
  BENCH_CHECK_CUDA(cudaMemcpy(dslots->get(), slots_seq.data(), batch * 4, cudaMemcpyHostToDevice));
  BENCH_CHECK_CUDA(FillUniformF32(q->get(), q->size(), 6, 1.0f, 0.0f, nullptr));
  const MicroLists lists = MicroBlockLists(batch, nkv, nb, ctx);
  auto dcounts = DeviceBuffer<int32_t>::Allocate(lists.counts.size());
  auto dblocks = DeviceBuffer<int32_t>::Allocate(lists.blocks.size());
  auto dlslots = DeviceBuffer<int32_t>::Allocate(lists.blocks.size());
  BENCH_CHECK_CUDA(cudaMemcpy(dcounts->get(), lists.counts.data(), lists.counts.size() * 4,
                              cudaMemcpyHostToDevice));
  BENCH_CHECK_CUDA(cudaMemcpy(dblocks->get(), lists.blocks.data(), lists.blocks.size() * 4,
                              cudaMemcpyHostToDevice));
  BENCH_CHECK_CUDA(cudaMemcpy(dlslots->get(), lists.slots.data(), lists.blocks.size() * 4,
                              cudaMemcpyHostToDevice));
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
  a.part_o = part_o->get();
  a.part_ml = part_ml->get();
  a.out = att->get();
  TimeMicroAttention(
      a, BlockLists{dcounts->get(), dblocks->get(), dlslots->get(), nullptr, lists.stride},
      lists.counts, nb, slot_elems, read_gbps);
}

}  // namespace

void MicroBenchmarks(const CudaWeights& w, double read_gbps) {
  const ModelConfig& c = w.config();
  const int I = c.intermediate_size;
  auto x = DeviceBuffer<__nv_bfloat16>::Allocate(8 * I);
  auto y = DeviceBuffer<float>::Allocate(8 * c.vocab_size);
  auto out = DeviceBuffer<__nv_bfloat16>::Allocate(8 * I);
  BENCH_CHECK_OK(x.status());
  BENCH_CHECK_OK(y.status());
  BENCH_CHECK_OK(out.status());
  BENCH_CHECK_CUDA(FillUniformBf16(x->get(), 8 * I, 3, 1.0f, nullptr));
  // Each kernel side by side on the same matrix and tokens; cuBLAS (cublasGemmEx, bf16 in,
  // f32 out; gate_up without the SwiGLU pass the decoder adds) for reference.
  auto gemm = Gemm::Create(nullptr);
  BENCH_CHECK_OK(gemm.status());
  auto gu = DeviceBuffer<__nv_bfloat16>::Allocate(int64_t{8} * 2 * I);
  BENCH_CHECK_OK(gu.status());
  MicroProjections(w, {x->get(), y->get(), out->get(), gemm->get(), gu->get()}, read_gbps);
  // Attention: one layer, 8 KV heads, context 32768, batch 1 and 8.
  std::printf("micro: paged decode attention, one layer (8 KV heads x 4 query heads, hd 128)\n");
  for (int batch : {1, 8}) MicroAttention(c, batch, read_gbps);
  std::printf("\n");
}

}  // namespace apr::cuda
