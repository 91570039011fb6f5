// The kernel parts of issue 20's families against host references (GPU machine only, tag
// "gpu"): the q/k/v prologue (Qwen2 biases, Qwen3 q/k norms), RoPE with an attention factor
// and LongRoPE's per-token table, and the sliding window in prefill and decode attention.
// cuda_decoder_test's CudaFamilies run the same parts end to end.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "backends/cuda/paged_decode_attention.h"
#include "backends/cuda/prefill_attention.h"
#include "backends/cuda/qkv_prologue.h"
#include "backends/cuda/rope_append.h"
#include "backends/cuda/test_util.h"
#include "runtime/rope.h"

namespace apr::cuda {
namespace {

using testing::B;
using testing::Dev;
using testing::DevBf16;
using testing::HostBf16;
using testing::kBf16Tol;
using testing::RelErr;
using testing::RoundBf16;
using testing::Uniform;

TEST(QkvPrologue, BiasesThenPerHeadRmsNorm) {
  std::mt19937_64 rng(20);
  const int n = 5, nh = 4, nkv = 2, hd = 64, w = (nh + 2 * nkv) * hd;
  const float eps = 1e-6f;
  const std::vector<float> qkv = Uniform(rng, size_t(n) * w, -3, 3);
  const std::vector<float> bias = Uniform(rng, w);
  const std::vector<float> qn = Uniform(rng, hd, 0.5, 1.5), kn = Uniform(rng, hd, 0.5, 1.5);
  Dev<float> dbias(bias), dqn(qn), dkn(kn);
  for (int mode = 1; mode <= 3; ++mode) {  // 1: biases, 2: norms, 3: both
    const bool with_bias = mode & 1, with_norm = mode & 2;
    std::vector<double> want(qkv.begin(), qkv.end());
    for (int i = 0; i < n; ++i) {
      double* row = &want[size_t(i) * w];
      if (with_bias)
        for (int t = 0; t < w; ++t) row[t] = float(float(row[t]) + bias[t]);
      if (!with_norm) continue;
      for (int h = 0; h < nh + nkv; ++h) {
        double ss = 0;
        for (int j = 0; j < hd; ++j) ss += row[h * hd + j] * row[h * hd + j];
        const double inv = 1.0 / std::sqrt(ss / hd + eps);
        for (int j = 0; j < hd; ++j) row[h * hd + j] *= inv * (h < nh ? qn[j] : kn[j]);
      }
    }
    Dev<float> d(qkv);
    const QkvPrologueArgs a{d.get(),
                            n,
                            nh,
                            nkv,
                            hd,
                            with_bias ? dbias.get() : nullptr,
                            with_norm ? dqn.get() : nullptr,
                            with_norm ? dkn.get() : nullptr,
                            eps};
    ASSERT_TRUE(QkvPrologueNeeded(a));
    ASSERT_CUDA(LaunchQkvPrologue(a, nullptr));
    ASSERT_CUDA(cudaDeviceSynchronize());
    EXPECT_LE(RelErr(d.Host(), want), 1e-5) << "mode " << mode;
  }
}

// LongRoPE's tables and the attention factor: each decode token picks the long table once
// its context passes the original length; a prefill pass passes one table for all.
TEST(RopeAppend, AttentionFactorAndLongRopeTables) {
  std::mt19937_64 rng(21);
  ModelConfig c;
  c.head_dim = 64;
  c.rope_theta = 10000;
  c.rope_scaling.type = RopeScaling::Type::kLongRope;
  c.rope_scaling.original_max_position_embeddings = 64;
  c.rope_scaling.factor = 8;
  for (int i = 0; i < 32; ++i) {
    c.rope_scaling.short_factor.push_back(1 + i / 62.0);
    c.rope_scaling.long_factor.push_back(2 + i / 5.0);
  }
  const RopeParams shrt = RopeForContext(c, 1), lng = RopeForContext(c, 65);
  ASSERT_GT(shrt.attention_factor, 1.0f);
  const int nh = 2, nkv = 1, hd = 64, n = 4;
  const std::vector<int32_t> pos = {0, 63, 64, 200}, seq = {0, 0, 0, 0};
  std::vector<int32_t> table(16, 0);
  for (int b = 0; b < 16; ++b) table[b] = b;
  Dev<int32_t> dtable(table), dpos(pos), dseq(seq);
  std::vector<float> both = shrt.inv_freq;
  both.insert(both.end(), lng.inv_freq.begin(), lng.inv_freq.end());
  Dev<float> dinv(both);
  const std::vector<float> qkv = Uniform(rng, size_t(n) * (nh + 2 * nkv) * hd);
  Dev<float> dqkv(qkv), q(size_t(n) * nh * hd);
  Dev<uint16_t> pool(size_t(16) * 32 * hd);
  for (bool decode : {true, false}) {
    RopeAppendArgs a;
    a.qkv = dqkv.get();
    a.n = n;
    a.num_heads = nh;
    a.num_kv_heads = nkv;
    a.head_dim = hd;
    a.inv_freq = decode ? dinv.get() : dinv.get() + 32;  // prefill: a pass ending past 64
    a.inv_freq_long = decode ? dinv.get() + 32 : nullptr;
    a.long_after = decode ? 64 : 0;
    a.attention_factor = shrt.attention_factor;
    a.positions = dpos.get();
    a.seq_slots = dseq.get();
    a.table = SlotTable{dtable.get(), 16, 1, 1};
    a.q_out = q.get();
    a.pool = B(pool);
    q.Poison();
    ASSERT_CUDA(LaunchRopeAppend(a, nullptr));
    ASSERT_CUDA(cudaDeviceSynchronize());
    const std::vector<float> qh = q.Host();
    for (int i = 0; i < n; ++i) {
      const std::vector<float>& inv = decode && pos[i] + 1 <= 64 ? shrt.inv_freq : lng.inv_freq;
      std::vector<float> row(qkv.begin() + size_t(i) * (nh + 2 * nkv) * hd,
                             qkv.begin() + size_t(i) * (nh + 2 * nkv) * hd + nh * hd);
      ApplyRope(MakeRopeTable(inv, pos[i], pos[i] + 1, shrt.attention_factor), pos[i], nh, hd,
                row.data());
      std::vector<float> got(qh.begin() + size_t(i) * nh * hd,
                             qh.begin() + size_t(i + 1) * nh * hd);
      EXPECT_LE(RelErr(got, row), 1e-5) << "token " << i << (decode ? " decode" : " prefill");
    }
  }
}

// One sequence's K/V in a pool whose block b is slot b (one layer, nkv heads).
struct WindowPool {
  int nkv, hd, blocks;
  std::vector<float> pool;
  Dev<uint16_t> dpool;
  Dev<int32_t> dtable;
  WindowPool(std::mt19937_64& rng, int seqs, int nkv, int hd, int blocks)
      : nkv(nkv), hd(hd), blocks(blocks) {
    pool = Uniform(rng, size_t(seqs) * blocks * nkv * 32 * hd);
    for (float& v : pool) v = RoundBf16(v);
    dpool = DevBf16(pool);
    std::vector<int32_t> t(size_t(seqs) * blocks);
    for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<int32_t>(i);
    dtable = Dev<int32_t>(t);
  }
  SlotTable Table() const { return SlotTable{dtable.get(), blocks, nkv, nkv}; }
  const float* K(int s, int g, int t) const {
    return &pool[((size_t(s) * blocks + t / 16) * nkv + g) * 32 * hd + (t % 16) * hd];
  }
  const float* V(int s, int g, int t) const { return K(s, g, t) + 16 * hd; }
  // Attention of one query (head h of `group`) at context `ctx` over keys [ctx - w, ctx).
  void Reference(int s, int h, int group, const float* q, int ctx, int w, double* out) const {
    const int first = std::max(0, ctx - w), g = h / group;
    std::vector<double> p(ctx - first);
    double mx = -INFINITY, sum = 0;
    for (int t = first; t < ctx; ++t) {
      double dot = 0;
      for (int d = 0; d < hd; ++d) dot += double(q[d]) * K(s, g, t)[d];
      p[t - first] = dot / std::sqrt(double(hd));
      mx = std::max(mx, p[t - first]);
    }
    for (double& v : p) sum += (v = std::exp(v - mx));
    for (int d = 0; d < hd; ++d) out[d] = 0;
    for (int t = first; t < ctx; ++t)
      for (int d = 0; d < hd; ++d) out[d] += p[t - first] / sum * V(s, g, t)[d];
  }
};

TEST(SlidingWindow, PrefillAttendsKeysInTheWindow) {
  for (int hd : {16, 64}) {
    std::mt19937_64 rng(22 + hd);
    const int nkv = 2, group = 2, nh = nkv * group, window = 40;
    WindowPool wp(rng, 1, nkv, hd, 20);
    for (auto [start, n] : {std::pair{0, 100}, std::pair{70, 60}, std::pair{250, 7}}) {
      const std::vector<float> q = Uniform(rng, size_t(n) * nh * hd, -2, 2);
      std::vector<double> want(q.size());
      for (int i = 0; i < n; ++i)
        for (int h = 0; h < nh; ++h)
          wp.Reference(0, h, group, &q[(size_t(i) * nh + h) * hd], start + i + 1, window,
                       &want[(size_t(i) * nh + h) * hd]);
      Dev<float> dq(q);
      Dev<uint16_t> out(q.size());
      PrefillAttentionArgs a;
      a.num_heads = nh;
      a.num_kv_heads = nkv;
      a.head_dim = hd;
      a.scale = 1.0f / std::sqrt(float(hd));
      a.q = dq.get();
      a.n = n;
      a.start = start;
      a.pool = B(wp.dpool);
      a.table = wp.Table();
      a.out = B(out);
      a.window = window;
      out.Poison();
      ASSERT_CUDA(LaunchPrefillAttention(a, nullptr));
      ASSERT_CUDA(cudaDeviceSynchronize());
      EXPECT_LE(RelErr(HostBf16(out), want), kBf16Tol) << "hd " << hd << " start " << start;
    }
  }
}

TEST(SlidingWindow, DecodeAttendsKeysInTheWindowOverSplits) {
  for (int hd : {16, 128}) {
    std::mt19937_64 rng(23 + hd);
    const int nkv = 2, group = 2, nh = nkv * group, window = 40, batch = 3;
    const std::vector<int32_t> lens = {300, 41, 17};  // far past, just past, within the window
    WindowPool wp(rng, batch, nkv, hd, 20);
    const std::vector<float> q = Uniform(rng, size_t(batch) * nh * hd, -2, 2);
    std::vector<double> want(q.size());
    for (int b = 0; b < batch; ++b)
      for (int h = 0; h < nh; ++h)
        wp.Reference(b, h, group, &q[(size_t(b) * nh + h) * hd], lens[b], window,
                     &want[(size_t(b) * nh + h) * hd]);
    const std::vector<int32_t> slots = {0, 1, 2};
    Dev<int32_t> dlens(lens), dslots(slots);
    Dev<float> dq(q);
    for (int splits : {1, 4, 19}) {
      Dev<float> part_o(size_t(batch) * nh * splits * hd), part_ml(size_t(batch) * nh * splits * 2);
      Dev<uint16_t> out(q.size());
      PagedDecodeArgs a;
      a.batch = batch;
      a.num_heads = nh;
      a.num_kv_heads = nkv;
      a.head_dim = hd;
      a.scale = 1.0f / std::sqrt(float(hd));
      a.q = dq.get();
      a.pool = B(wp.dpool);
      a.context_lens = dlens.get();
      a.seq_slots = dslots.get();
      a.table = wp.Table();
      a.window = window;
      a.splits = splits;
      a.part_o = part_o.get();
      a.part_ml = part_ml.get();
      a.out = B(out);
      out.Poison();
      ASSERT_CUDA(LaunchPagedDecodeAttention(a, nullptr));
      ASSERT_CUDA(cudaDeviceSynchronize());
      EXPECT_LE(RelErr(HostBf16(out), want), kBf16Tol) << "hd " << hd << " splits " << splits;
    }
  }
}

}  // namespace
}  // namespace apr::cuda
