// Every CUDA kernel against a plain C++ reference (double accumulation) on fresh random
// inputs, outputs poisoned before each launch. Runs on the GPU machine only (tag "gpu").
// Tolerances (test_util.h): bf16 results 1e-2 relative (METHOD.md); float32 results on
// the same rounded operands 1e-4 (1e-3 where exp2f / float softmax normalisers enter).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "backends/cuda/block_rules.h"
#include "backends/cuda/fill.h"
#include "backends/cuda/gemm.h"
#include "backends/cuda/gemv.h"
#include "backends/cuda/gemv_mma.h"
#include "backends/cuda/kv_pool_fixture.h"
#include "backends/cuda/norm_ops.h"
#include "backends/cuda/paged_decode_attention.h"
#include "backends/cuda/prefill_attention.h"
#include "backends/cuda/rope_append.h"
#include "backends/cuda/test_util.h"
#include "runtime/model_config.h"
#include "runtime/rope.h"

namespace apr::cuda {
namespace {

using testing::B;
using testing::Dev;
using testing::DevBf16;
using testing::HostBf16;
using testing::kBf16Tol;
using testing::kF32Tol;
using testing::RelErr;
using testing::RoundBf16;
using testing::Uniform;

using testing::PoolFixture;
using testing::Rounded;

// ---------------------------------------------------------------- projections

// y[t][r] = sum_i w[r][i] x[t][i] in double: w is [m][k], x is [n][k].
std::vector<double> ReferenceLinear(const float* w, const std::vector<float>& x, int m, int k,
                                    int n) {
  std::vector<double> y(size_t(n) * m);
  for (int t = 0; t < n; ++t)
    for (int r = 0; r < m; ++r) {
      double acc = 0;
      for (int i = 0; i < k; ++i) acc += double(w[size_t(r) * k + i]) * x[size_t(t) * k + i];
      y[size_t(t) * m + r] = acc;
    }
  return y;
}

// Both kernels (the tensor-core kernel in every launch shape built) at every batch size; k not a
// multiple of 32 exercises the tensor-core kernel's partial last chunk, m not a multiple of
// 16 its clamped rows.
TEST(Gemv, AllKernelsEpiloguesAndBatchSizes) {
  std::mt19937_64 rng(1);
  struct Kernel {
    const char* name;
    GemvKernel kernel;
    GemvMmaShape shape;  // warps 0: through LaunchGemv
  };
  const Kernel kernels[] = {{"auto", GemvKernel::kAuto, {0, 0}},
                            {"cuda cores", GemvKernel::kCudaCores, {0, 0}},
                            {"tensor cores 4x4", GemvKernel::kTensorCores, {4, 4}},
                            {"tensor cores 8x8", GemvKernel::kTensorCores, {8, 8}},
                            {"tensor cores 16x8", GemvKernel::kTensorCores, {16, 8}}};
  auto launch = [](const Kernel& kn, GemvArgs a) {
    a.kernel = kn.kernel;
    return kn.shape.warps > 0 ? LaunchGemvMma(a, kn.shape, nullptr) : LaunchGemv(a, nullptr);
  };
  struct Shape {
    int m, k;
  };
  for (Shape s : {Shape{37, 40}, Shape{1000, 2056}, Shape{4096, 4096}, Shape{6, 14336}}) {
    const std::vector<float> w = Rounded(Uniform(rng, size_t(s.m) * s.k));
    const std::vector<float> w2 = Rounded(Uniform(rng, size_t(2 * s.m) * s.k));
    Dev<uint16_t> dw = DevBf16(w), dw2 = DevBf16(w2);
    for (int n = 1; n <= kGemvMaxTokens; ++n) {
      const std::vector<float> x = Rounded(Uniform(rng, size_t(n) * s.k));
      Dev<uint16_t> dx = DevBf16(x);
      // w2 is [2m][k]: gate rows, then up rows.
      const std::vector<double> ref = ReferenceLinear(w.data(), x, s.m, s.k, n);
      const std::vector<double> g = ReferenceLinear(w2.data(), x, s.m, s.k, n);
      const std::vector<double> u = ReferenceLinear(w2.data() + size_t(s.m) * s.k, x, s.m, s.k, n);
      for (const Kernel& kn : kernels) {
        // kStore
        Dev<float> y(size_t(n) * s.m);
        y.Poison();
        GemvArgs a;
        a.w = B(dw);
        a.x = B(dx);
        a.m = s.m;
        a.k = s.k;
        a.n = n;
        a.y = y.get();
        a.ldy = s.m;
        ASSERT_CUDA(launch(kn, a));
        ASSERT_CUDA(cudaDeviceSynchronize());
        EXPECT_LE(RelErr(y.Host(), ref), kF32Tol)
            << s.m << "x" << s.k << " n=" << n << " " << kn.name;
        // kAccumulate onto a random residual
        const std::vector<float> base = Uniform(rng, size_t(n) * s.m);
        Dev<float> acc(base);
        a.y = acc.get();
        a.epilogue = GemvEpilogue::kAccumulate;
        ASSERT_CUDA(launch(kn, a));
        ASSERT_CUDA(cudaDeviceSynchronize());
        std::vector<double> ref_acc(ref);
        for (size_t i = 0; i < ref_acc.size(); ++i) ref_acc[i] += base[i];
        EXPECT_LE(RelErr(acc.Host(), ref_acc), kF32Tol) << kn.name << " n=" << n;
        // kSwiGlu
        Dev<uint16_t> out(size_t(n) * s.m);
        out.Poison();
        a.w = B(dw2);
        a.epilogue = GemvEpilogue::kSwiGlu;
        a.out = B(out);
        ASSERT_CUDA(launch(kn, a));
        ASSERT_CUDA(cudaDeviceSynchronize());
        std::vector<double> ref_sw(g.size());
        for (size_t i = 0; i < g.size(); ++i) ref_sw[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
        EXPECT_LE(RelErr(HostBf16(out), ref_sw), kBf16Tol) << kn.name << " n=" << n;
      }
    }
  }
}

// The decoder's pattern under programmatic dependent launch: a GEMV reads x, RMSNorm (which
// lets dependents start at once) rewrites x, the next GEMV reads the new x, all queued on
// one stream. The second GEMV must see RMSNorm's output, not the first one's input. (The
// GEMVs once read x through __ldg's non-coherent path, which PTX allows only for data
// that stays unchanged while the kernel runs - under PDL the kernel starts while its input
// is still being written - and the tensor-core kernel read stale values.)
TEST(Gemv, UnderPdlReadsWhatThePreviousKernelWrote) {
  std::mt19937_64 rng(11);
  cudaStream_t stream;
  ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  struct Shape {
    int m, k;
  };
  for (Shape s : {Shape{1024, 384}, Shape{4096, 4096}})
    for (GemvKernel kernel : {GemvKernel::kCudaCores, GemvKernel::kTensorCores})
      for (int n = 1; n <= kGemvMaxTokens; ++n) {
        const std::vector<float> w = Rounded(Uniform(rng, size_t(s.m) * s.k));
        const std::vector<float> old_x = Rounded(Uniform(rng, size_t(n) * s.k));
        const std::vector<float> residual = Uniform(rng, size_t(n) * s.k);
        const std::vector<float> norm_w = Uniform(rng, s.k);
        Dev<uint16_t> dw = DevBf16(w), xn = DevBf16(old_x);
        Dev<float> dres(residual), dnorm(norm_w), y1(size_t(n) * s.m), y2(size_t(n) * s.m);
        y1.Poison();
        y2.Poison();
        ASSERT_CUDA(cudaDeviceSynchronize());
        GemvArgs a;
        a.w = B(dw);
        a.x = B(xn);
        a.m = s.m;
        a.k = s.k;
        a.n = n;
        a.ldy = s.m;
        a.pdl = true;
        a.kernel = kernel;
        a.y = y1.get();
        ASSERT_CUDA(LaunchGemv(a, stream));
        ASSERT_CUDA(LaunchRmsNorm(dres.get(), dnorm.get(), n, s.k, 1e-5f, B(xn), stream));
        a.y = y2.get();
        ASSERT_CUDA(LaunchGemv(a, stream));
        ASSERT_CUDA(cudaStreamSynchronize(stream));
        const char* name = kernel == GemvKernel::kCudaCores ? " CUDA cores" : " tensor cores";
        EXPECT_LE(RelErr(y1.Host(), ReferenceLinear(w.data(), old_x, s.m, s.k, n)), kF32Tol)
            << "before RMSNorm, " << s.m << "x" << s.k << " n=" << n << name;
        EXPECT_LE(RelErr(y2.Host(), ReferenceLinear(w.data(), HostBf16(xn), s.m, s.k, n)), kF32Tol)
            << "after RMSNorm, " << s.m << "x" << s.k << " n=" << n << name;
      }
  ASSERT_CUDA(cudaStreamDestroy(stream));
}

TEST(Gemm, CublasF32AccumulateAndBf16) {
  std::mt19937_64 rng(2);
  const int m = 300, k = 264, n = 37;
  const std::vector<float> w = Rounded(Uniform(rng, size_t(m) * k)),
                           x = Rounded(Uniform(rng, size_t(n) * k)),
                           base = Uniform(rng, size_t(n) * m);
  Dev<uint16_t> dw = DevBf16(w), dx = DevBf16(x);
  const std::vector<double> ref = ReferenceLinear(w.data(), x, m, k, n);
  auto gemm = Gemm::Create(nullptr);
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  Dev<float> y(base);
  ASSERT_TRUE((*gemm)->LinearF32(B(dw), m, k, B(dx), n, y.get(), m, 1.0f).ok());
  ASSERT_CUDA(cudaDeviceSynchronize());
  std::vector<double> ref_acc(ref);
  for (size_t i = 0; i < ref.size(); ++i) ref_acc[i] += base[i];
  EXPECT_LE(RelErr(y.Host(), ref_acc), kF32Tol);
  Dev<uint16_t> yb(size_t(n) * m);
  yb.Poison();
  ASSERT_TRUE((*gemm)->LinearBf16(B(dw), m, k, B(dx), n, B(yb)).ok());
  ASSERT_CUDA(cudaDeviceSynchronize());
  EXPECT_LE(RelErr(HostBf16(yb), ref), kBf16Tol);
}

// ---------------------------------------------------------------- small ops

TEST(NormOps, EmbeddingRmsNormSwiGlu) {
  std::mt19937_64 rng(3);
  for (int hidden : {96, 4096}) {
    const int n = 5, vocab = 50;
    const std::vector<float> table = Rounded(Uniform(rng, size_t(vocab) * hidden));
    Dev<uint16_t> dt = DevBf16(table);
    const std::vector<int32_t> tokens = {3, 0, 49, 3, 17};
    Dev<int32_t> dtok(tokens);
    Dev<float> x(size_t(n) * hidden);
    x.Poison();
    ASSERT_CUDA(LaunchEmbedding(dtok.get(), n, B(dt), hidden, x.get(), nullptr));
    ASSERT_CUDA(cudaDeviceSynchronize());
    const std::vector<float> xh = x.Host();
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < hidden; ++j)
        ASSERT_EQ(xh[size_t(i) * hidden + j], table[size_t(tokens[i]) * hidden + j]);

    const std::vector<float> xr = Uniform(rng, size_t(n) * hidden, -3, 3),
                             wn = Uniform(rng, hidden, 0.5, 1.5);
    Dev<float> dxr(xr), dwn(wn);
    Dev<uint16_t> out(size_t(n) * hidden);
    out.Poison();
    ASSERT_CUDA(LaunchRmsNorm(dxr.get(), dwn.get(), n, hidden, 1e-5f, B(out), nullptr));
    ASSERT_CUDA(cudaDeviceSynchronize());
    std::vector<double> ref(size_t(n) * hidden);
    for (int i = 0; i < n; ++i) {
      double ss = 0;
      for (int j = 0; j < hidden; ++j)
        ss += double(xr[size_t(i) * hidden + j]) * xr[size_t(i) * hidden + j];
      const double inv = 1 / std::sqrt(ss / hidden + 1e-5);
      for (int j = 0; j < hidden; ++j)
        ref[size_t(i) * hidden + j] = wn[j] * xr[size_t(i) * hidden + j] * inv;
    }
    EXPECT_LE(RelErr(HostBf16(out), ref), kBf16Tol);

    const int inter = hidden + 8;
    const std::vector<float> gu = Rounded(Uniform(rng, size_t(n) * 2 * inter, -4, 4));
    Dev<uint16_t> dgu = DevBf16(gu), act(size_t(n) * inter);
    act.Poison();
    ASSERT_CUDA(LaunchSwiGlu(B(dgu), n, inter, B(act), nullptr));
    ASSERT_CUDA(cudaDeviceSynchronize());
    std::vector<double> ref_act(size_t(n) * inter);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < inter; ++j) {
        const double g = gu[size_t(i) * 2 * inter + j], u = gu[size_t(i) * 2 * inter + inter + j];
        ref_act[size_t(i) * inter + j] = g / (1 + std::exp(-g)) * u;
      }
    EXPECT_LE(RelErr(HostBf16(act), ref_act), kBf16Tol);
  }
}

TEST(RopeAppend, MatchesCpuRopeAndWritesBlocks) {
  std::mt19937_64 rng(4);
  ModelConfig c;
  c.head_dim = 128;
  c.rope_theta = 500000;
  c.rope_scaling.type = RopeScaling::Type::kLlama3;
  c.rope_scaling.factor = 8;
  c.rope_scaling.original_max_position_embeddings = 8192;
  const std::vector<float> inv = RopeInverseFrequencies(c);
  const int nh = 4, nkv = 2, hd = 128, layers = 3, layer = 2, n = 6, max_blocks = 8000;
  const std::vector<int32_t> pos = {0, 1, 17, 4095, 100000, 127999};
  const std::vector<int32_t> seq = {0, 1, 0, 1, 0, 1};
  // Only the touched blocks get groups (distinct ones); the rest of the table is unused.
  std::vector<int32_t> table(2 * max_blocks, 0);
  std::map<std::pair<int, int>, int> group_of;
  for (int i = 0; i < n; ++i) {
    const auto key = std::make_pair(seq[i], pos[i] / 16);
    if (!group_of.count(key)) group_of[key] = static_cast<int>(group_of.size());
    table[size_t(seq[i]) * max_blocks + pos[i] / 16] = group_of[key];
  }
  const int ngroups = static_cast<int>(group_of.size());
  Dev<int32_t> dtable(table);
  Dev<uint16_t> pool(size_t(ngroups) * layers * nkv * 32 * hd);
  pool.Poison();
  auto slot_of = [&](int i, int g) {
    return int64_t(group_of[{seq[i], pos[i] / 16}]) * layers * nkv + layer * nkv + g;
  };
  const std::vector<float> qkv = Uniform(rng, size_t(n) * (nh + 2 * nkv) * hd);
  Dev<float> dqkv(qkv), dinv(inv), q(size_t(n) * nh * hd);
  Dev<int32_t> dpos(pos), dseq(seq);
  q.Poison();
  RopeAppendArgs a;
  a.qkv = dqkv.get();
  a.n = n;
  a.num_heads = nh;
  a.num_kv_heads = nkv;
  a.head_dim = hd;
  a.inv_freq = dinv.get();
  a.positions = dpos.get();
  a.seq_slots = dseq.get();
  a.table = SlotTable{dtable.get(), max_blocks, layers * nkv, nkv};
  a.layer = layer;
  a.q_out = q.get();
  a.pool = B(pool);
  ASSERT_CUDA(LaunchRopeAppend(a, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  const std::vector<float> qh = q.Host();
  const std::vector<float> poolh = HostBf16(pool);
  for (int i = 0; i < n; ++i) {
    std::vector<float> row(qkv.begin() + size_t(i) * (nh + 2 * nkv) * hd,
                           qkv.begin() + size_t(i + 1) * (nh + 2 * nkv) * hd);
    const RopeTable t = MakeRopeTable(inv, pos[i], pos[i] + 1);
    ApplyRope(t, pos[i], nh + nkv, hd, row.data());  // q heads then k heads
    std::vector<float> got(qh.begin() + size_t(i) * nh * hd, qh.begin() + size_t(i + 1) * nh * hd);
    std::vector<float> want(row.begin(), row.begin() + nh * hd);
    EXPECT_LE(RelErr(got, want), 1e-5) << "q of token " << i;
    for (int g = 0; g < nkv; ++g) {
      const int64_t slot = slot_of(i, g);
      for (int d = 0; d < hd; ++d) {
        ASSERT_NEAR(poolh[(slot * 32 + pos[i] % 16) * hd + d], RoundBf16(row[(nh + g) * hd + d]),
                    1e-2 * std::fabs(row[(nh + g) * hd + d]) + 1e-6)
            << "k token " << i;
        ASSERT_EQ(poolh[(slot * 32 + 16 + pos[i] % 16) * hd + d],
                  RoundBf16(row[(nh + nkv + g) * hd + d]))
            << "v token " << i;
      }
    }
  }
}

// ---------------------------------------------------------------- decode attention

struct DecodeCase {
  int hd, group;
};

class PagedDecode : public ::testing::TestWithParam<DecodeCase> {};

TEST_P(PagedDecode, ListsDenseRowsScoresAndHistory) {
  const auto [hd, group] = GetParam();
  std::mt19937_64 rng(hd * 10 + group);
  const int nkv = 2, nh = nkv * group, layers = 2, layer = 1, max_blocks = 80;
  const std::vector<int> lens = {1, 37, 700, 1100, 16};
  const int batch = static_cast<int>(lens.size());
  PoolFixture pf(rng, batch + 1, layers, nkv, hd, max_blocks);
  const std::vector<int32_t> seq_slots = {3, 0, 5, 1, 2};
  const float scale = 1.0f / std::sqrt(float(hd));
  const std::vector<float> q = Uniform(rng, size_t(batch) * nh * hd, -2.5f, 2.5f);

  // Lists: even rows dense except row 1 (a single block), odd rows random subsets that
  // always hold the tail block.
  const int stride = max_blocks;
  std::vector<int32_t> counts(batch * nkv), blocks(size_t(batch) * nkv * stride, -7),
      slots(size_t(batch) * nkv * stride, -7), starts(size_t(batch) * nkv * stride, 0);
  std::vector<std::vector<int>> listed(batch * nkv), first_of(batch * nkv);
  for (int b = 0; b < batch; ++b)
    for (int g = 0; g < nkv; ++g) {
      const int r = b * nkv + g, nb = NumBlocks(lens[b]);
      std::vector<int>& l = listed[r];
      if (r == 1) {
        l = {nb - 1};
      } else if (r % 2 == 0) {
        counts[r] = -1;
        for (int i = 0; i < nb; ++i) l.push_back(i);
        continue;
      } else {
        for (int i = 0; i < nb - 1; ++i)
          if (rng() % 3 == 0) l.push_back(i);
        l.push_back(nb - 1);
      }
      counts[r] = static_cast<int>(l.size());
      for (size_t i = 0; i < l.size(); ++i) {
        blocks[size_t(r) * stride + i] = l[i];
        slots[size_t(r) * stride + i] = static_cast<int32_t>(pf.Slot(seq_slots[b], layer, g, l[i]));
        // A first token inside some blocks (the token-exact local window), always leaving
        // at least one token.
        const int valid = std::min(16, lens[b] - l[i] * 16);
        starts[size_t(r) * stride + i] = rng() % 4 == 0 ? static_cast<int>(rng() % valid) : 0;
      }
    }
  for (int r = 0; r < batch * nkv; ++r)
    for (size_t e = 0; e < listed[r].size(); ++e)
      first_of[r].push_back(counts[r] < 0 ? 0 : starts[size_t(r) * stride + e]);

  // Reference.
  std::vector<double> out_ref(size_t(batch) * nh * hd, 0.0);
  std::vector<double> probs_ref(size_t(batch) * nkv * stride * group, 0.0);
  for (int b = 0; b < batch; ++b)
    for (int h = 0; h < nh; ++h) {
      const int g = h / group, r = b * nkv + g;
      std::vector<double> logit;
      std::vector<std::pair<int64_t, int>> tok;  // (slot, t)
      for (size_t e = 0; e < listed[r].size(); ++e) {
        const int blk = listed[r][e];
        const int64_t slot = pf.Slot(seq_slots[b], layer, g, blk);
        for (int t = first_of[r][e]; t < 16 && blk * 16 + t < lens[b]; ++t) {
          double dot = 0;
          for (int d = 0; d < hd; ++d)
            dot += double(q[(size_t(b) * nh + h) * hd + d]) * pf.K(slot, t)[d];
          logit.push_back(dot * scale);
          tok.push_back({slot, t});
        }
      }
      const double mx = *std::max_element(logit.begin(), logit.end());
      double sum = 0;
      for (double& v : logit) sum += (v = std::exp(v - mx));
      for (size_t i = 0; i < logit.size(); ++i) {
        const double p = logit[i] / sum;
        for (int d = 0; d < hd; ++d)
          out_ref[(size_t(b) * nh + h) * hd + d] += p * pf.V(tok[i].first, tok[i].second)[d];
      }
      size_t i = 0;
      for (size_t e = 0; e < listed[r].size(); ++e) {
        double pmax = 0;
        const int blk = listed[r][e];
        for (int t = first_of[r][e]; t < 16 && blk * 16 + t < lens[b]; ++t)
          pmax = std::max(pmax, logit[i++] / sum);
        probs_ref[(size_t(r) * stride + e) * group + h % group] = pmax;
      }
    }

  Dev<float> dq(q), part_o(size_t(batch) * nh * 64 * hd), part_ml(size_t(batch) * nh * 64 * 2);
  Dev<int32_t> dlens(std::vector<int32_t>(lens.begin(), lens.end())), dslots_seq(seq_slots),
      dcounts(counts), dblocks(blocks), dslots(slots), dstarts(starts);
  const int hist_rows = 64, hist_layers = layers, seq_capacity = 6;
  const std::vector<float> hist0 =
      Uniform(rng, size_t(seq_capacity) * hist_layers * nkv * hist_rows * max_blocks, 0, 1);
  const std::vector<int32_t> hist_row = {5, 63, 0, 17, 30};
  Dev<int32_t> dhist_row(hist_row);
  for (int splits : {1, 3, 16, 64}) {
    Dev<float> block_max(size_t(batch) * nkv * stride * group), probs(block_max.size()),
        history(hist0);
    Dev<uint16_t> out(size_t(batch) * nh * hd);
    out.Poison();
    probs.Poison();
    PagedDecodeArgs a;
    a.batch = batch;
    a.num_heads = nh;
    a.num_kv_heads = nkv;
    a.head_dim = hd;
    a.scale = scale;
    a.q = dq.get();
    a.pool = B(pf.dpool);
    a.context_lens = dlens.get();
    a.seq_slots = dslots_seq.get();
    a.table = pf.Table();
    a.layer = layer;
    a.lists = BlockLists{dcounts.get(), dblocks.get(), dslots.get(), dstarts.get(), stride};
    a.splits = splits;
    a.part_o = part_o.get();
    a.part_ml = part_ml.get();
    a.block_max = block_max.get();
    a.score_stride = stride;
    a.out = B(out);
    a.block_probs = probs.get();
    a.history = history.get();
    a.history_row = dhist_row.get();
    a.history_layers = hist_layers;
    a.history_rows = hist_rows;
    a.history_cols = max_blocks;
    ASSERT_CUDA(LaunchPagedDecodeAttention(a, nullptr));
    ASSERT_CUDA(cudaDeviceSynchronize());
    EXPECT_LE(RelErr(HostBf16(out), out_ref), kBf16Tol) << "splits " << splits;
    // Block probabilities, only where listed.
    const std::vector<float> ph = probs.Host();
    std::vector<float> got;
    std::vector<double> want;
    for (int r = 0; r < batch * nkv; ++r)
      for (size_t e = 0; e < listed[r].size(); ++e)
        for (int gi = 0; gi < group; ++gi) {
          got.push_back(ph[(size_t(r) * stride + e) * group + gi]);
          want.push_back(probs_ref[(size_t(r) * stride + e) * group + gi]);
        }
    EXPECT_LE(RelErr(got.data(), want.data(), got.size()), 1e-3) << "splits " << splits;
    // History: the row is cleared over the sequence's blocks, then listed blocks get the
    // group max; every other value is untouched.
    std::vector<float> hexp = hist0;
    for (int b = 0; b < batch; ++b)
      for (int g = 0; g < nkv; ++g) {
        const int r = b * nkv + g;
        float* row = &hexp[((((size_t(seq_slots[b]) * hist_layers + layer) * nkv + g) * hist_rows) +
                            hist_row[b]) *
                           max_blocks];
        for (int j = 0; j < NumBlocks(lens[b]); ++j) row[j] = 0;
        for (size_t e = 0; e < listed[r].size(); ++e) {
          double m = 0;
          for (int gi = 0; gi < group; ++gi)
            m = std::max(m, probs_ref[(size_t(r) * stride + e) * group + gi]);
          row[listed[r][e]] = static_cast<float>(m);
        }
      }
    const std::vector<float> hh = history.Host();
    double worst = 0;
    for (size_t i = 0; i < hh.size(); ++i)
      worst = std::max(worst, std::fabs(double(hh[i]) - hexp[i]) / (std::fabs(hexp[i]) + 1e-3));
    EXPECT_LE(worst, 1e-3) << "history, splits " << splits;

    // The calibration pass: history only, full attention of the rows marked -1 (here every
    // odd row), nothing for rows marked 0; the output buffer is not touched.
    std::vector<int32_t> calib(batch * nkv);
    for (int r = 0; r < batch * nkv; ++r) calib[r] = r % 2 == 1 ? -1 : 0;
    Dev<int32_t> dcalib(calib);
    PagedDecodeArgs c = a;
    c.lists = BlockLists{dcalib.get(), nullptr, nullptr, nullptr, 0};
    c.history_only = true;
    c.block_probs = nullptr;
    out.Poison();
    ASSERT_CUDA(LaunchPagedDecodeAttention(c, nullptr));
    ASSERT_CUDA(cudaDeviceSynchronize());
    for (uint16_t bits : out.Host()) ASSERT_EQ(bits, 0xffff) << "history-only pass wrote output";
    std::vector<float> hexp2 = hexp;
    for (int b = 0; b < batch; ++b)
      for (int g = 0; g < nkv; ++g) {
        if (calib[b * nkv + g] == 0) continue;
        float* row =
            &hexp2[((((size_t(seq_slots[b]) * hist_layers + layer) * nkv + g) * hist_rows) +
                    hist_row[b]) *
                   max_blocks];
        const int nb = NumBlocks(lens[b]);
        std::vector<double> pooled(nb, 0.0);
        for (int gi = 0; gi < group; ++gi) {
          const int h = g * group + gi;
          std::vector<double> lg(lens[b]);
          for (int t = 0; t < lens[b]; ++t) {
            const float* k = pf.K(pf.Slot(seq_slots[b], layer, g, t / 16), t % 16);
            double dot = 0;
            for (int d = 0; d < hd; ++d) dot += double(q[(size_t(b) * nh + h) * hd + d]) * k[d];
            lg[t] = dot * scale;
          }
          const double mx = *std::max_element(lg.begin(), lg.end());
          double sum = 0;
          for (double v : lg) sum += std::exp(v - mx);
          for (int t = 0; t < lens[b]; ++t)
            pooled[t / 16] = std::max(pooled[t / 16], std::exp(lg[t] - mx) / sum);
        }
        for (int j = 0; j < nb; ++j) row[j] = static_cast<float>(pooled[j]);
      }
    const std::vector<float> hh2 = history.Host();
    double worst2 = 0;
    for (size_t i = 0; i < hh2.size(); ++i)
      worst2 =
          std::max(worst2, std::fabs(double(hh2[i]) - hexp2[i]) / (std::fabs(hexp2[i]) + 1e-3));
    EXPECT_LE(worst2, 1e-3) << "calibration history, splits " << splits;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, PagedDecode,
                         ::testing::Values(DecodeCase{16, 1}, DecodeCase{16, 8}, DecodeCase{32, 1},
                                           DecodeCase{32, 3}, DecodeCase{64, 2}, DecodeCase{64, 3},
                                           DecodeCase{64, 8}, DecodeCase{128, 1},
                                           DecodeCase{128, 2}, DecodeCase{128, 4}),
                         [](const auto& info) {
                           return "hd" + std::to_string(info.param.hd) + "_g" +
                                  std::to_string(info.param.group);
                         });

// ---------------------------------------------------------------- prefill attention

class Prefill : public ::testing::TestWithParam<DecodeCase> {};

TEST_P(Prefill, CausalChunkAndHistoryRows) {
  const auto [hd, group] = GetParam();
  std::mt19937_64 rng(100 + hd * 10 + group);
  const int nkv = 2, nh = nkv * group, layers = 2, layer = 1, max_blocks = 20, seq_slot = 1;
  PoolFixture pf(rng, 2, layers, nkv, hd, max_blocks);
  const float scale = 1.0f / std::sqrt(float(hd));
  for (auto [start, n] : {std::pair{0, 45}, std::pair{70, 33}, std::pair{0, 1}, std::pair{5, 200},
                          std::pair{17, 290}}) {
    const std::vector<float> q = Uniform(rng, size_t(n) * nh * hd, -2, 2);
    // Reference: row i at position start + i attends keys [0, start + i].
    std::vector<double> ref(size_t(n) * nh * hd, 0.0);
    const int rows = std::min(64, n);
    std::vector<double> hist_ref(size_t(nkv) * 64 * max_blocks, 0.0);
    for (int i = 0; i < n; ++i)
      for (int h = 0; h < nh; ++h) {
        const int g = h / group, ctx = start + i + 1;
        std::vector<double> p(ctx);
        for (int t = 0; t < ctx; ++t) {
          const float* k = pf.K(pf.Slot(seq_slot, layer, g, t / 16), t % 16);
          double dot = 0;
          for (int d = 0; d < hd; ++d) dot += double(q[(size_t(i) * nh + h) * hd + d]) * k[d];
          p[t] = dot * scale;
        }
        const double mx = *std::max_element(p.begin(), p.end());
        double sum = 0;
        for (double& v : p) sum += (v = std::exp(v - mx));
        for (int t = 0; t < ctx; ++t) {
          const float* v = pf.V(pf.Slot(seq_slot, layer, g, t / 16), t % 16);
          for (int d = 0; d < hd; ++d) ref[(size_t(i) * nh + h) * hd + d] += p[t] / sum * v[d];
        }
        if (i >= n - rows) {
          double* hr = &hist_ref[(size_t(g) * 64 + (64 - rows) + (i - (n - rows))) * max_blocks];
          for (int t = 0; t < ctx; ++t) hr[t / 16] = std::max(hr[t / 16], p[t] / sum);
        }
      }
    Dev<float> dq(q);
    Dev<uint16_t> out(size_t(n) * nh * hd);
    out.Poison();
    PrefillAttentionArgs a;
    a.num_heads = nh;
    a.num_kv_heads = nkv;
    a.head_dim = hd;
    a.scale = scale;
    a.q = dq.get();
    a.n = n;
    a.start = start;
    a.pool = B(pf.dpool);
    a.seq_slot = seq_slot;
    a.table = pf.Table();
    a.layer = layer;
    a.out = B(out);
    // The default kernel (tensor cores for head dims 64 and 128), then the CUDA-core one.
    for (bool cuda_cores : {false, true}) {
      a.cuda_cores = cuda_cores;
      out.Poison();
      ASSERT_CUDA(LaunchPrefillAttention(a, nullptr));
      ASSERT_CUDA(cudaDeviceSynchronize());
      EXPECT_LE(RelErr(HostBf16(out), ref), kBf16Tol)
          << "start " << start << " n " << n << " cuda_cores " << cuda_cores;
    }

    // History rows from the last `rows` queries; other layers and sequences untouched. The
    // default kernels (tensor cores for head dims 64 and 128: one key block per split here,
    // then at most 3 splits, several blocks each), then the CUDA-core one.
    const size_t image = size_t(64) * max_blocks;
    const std::vector<float> hist0 = Uniform(rng, 3 * layers * nkv * image, 0, 1);
    Dev<float> qlast(std::vector<float>(q.end() - size_t(rows) * nh * hd, q.end()));
    Dev<float> scratch(size_t(PrefillHistoryScratchFloats(nh)));
    for (auto [cuda_cores, max_splits] :
         {std::pair{false, 0}, std::pair{false, 3}, std::pair{true, 0}}) {
      Dev<float> history(hist0);
      PrefillHistoryArgs ha;
      ha.num_heads = nh;
      ha.num_kv_heads = nkv;
      ha.head_dim = hd;
      ha.scale = scale;
      ha.q = qlast.get();
      ha.rows = rows;
      ha.first_pos = start + n - rows;
      ha.pool = B(pf.dpool);
      ha.seq_slot = seq_slot;
      ha.table = pf.Table();
      ha.layer = layer;
      ha.history = history.get();
      ha.history_layers = layers;
      ha.history_rows = 64;
      ha.history_cols = max_blocks;
      ha.scratch = scratch.get();
      ha.cuda_cores = cuda_cores;
      ha.max_splits = max_splits;
      ASSERT_CUDA(LaunchPrefillHistory(ha, nullptr));
      ASSERT_CUDA(cudaDeviceSynchronize());
      const std::vector<float> hh = history.Host();
      const int nb = NumBlocks(start + n);
      double worst = 0;
      for (size_t i = 0; i < hh.size(); ++i) {
        const size_t img = i / image, within = i % image, col = within % max_blocks;
        const size_t s = img / (layers * nkv), l = img / nkv % layers, g = img % nkv;
        double want = hist0[i];
        if (int(s) == seq_slot && int(l) == layer && int(col) < nb)
          want = hist_ref[g * image + within];
        worst = std::max(worst, std::fabs(hh[i] - want) / (std::fabs(want) + 1e-3));
      }
      EXPECT_LE(worst, 1e-3) << "history, start " << start << " n " << n << " cuda_cores "
                             << cuda_cores << " max_splits " << max_splits;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, Prefill,
                         ::testing::Values(DecodeCase{16, 2}, DecodeCase{32, 1}, DecodeCase{64, 3},
                                           DecodeCase{128, 4}),
                         [](const auto& info) {
                           return "hd" + std::to_string(info.param.hd) + "_g" +
                                  std::to_string(info.param.group);
                         });

}  // namespace
}  // namespace apr::cuda
