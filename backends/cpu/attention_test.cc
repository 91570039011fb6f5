// CPU attention against a direct double-precision evaluation of softmax(q k^T / sqrt(d)) v.
#include "backends/cpu/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace apr::cpu {
namespace {

constexpr AttentionDims kDims{4, 2, 8};  // GQA: heads 0,1 -> KV head 0; 2,3 -> KV head 1

LayerKv RandomKv(int64_t len, std::mt19937& rng) {
  std::normal_distribution<float> n;
  LayerKv kv;
  kv.heads.resize(kDims.num_kv_heads);
  for (auto& h : kv.heads) {
    for (int64_t i = 0; i < len * kDims.head_dim; ++i) h.k.push_back(n(rng)), h.v.push_back(n(rng));
  }
  return kv;
}

std::vector<float> Random(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (float& x : v) x = 2 * d(rng);
  return v;
}

// Reference for one head and one query over `positions`; returns probs [ctx] and out [hd].
void Reference(const LayerKv& kv, int64_t head, const float* q,
               const std::vector<int64_t>& positions, int64_t ctx, std::vector<double>& probs,
               std::vector<double>& out) {
  const int64_t hd = kDims.head_dim;
  const auto& h = kv.heads[head / (kDims.num_heads / kDims.num_kv_heads)];
  std::vector<double> s;
  double mx = -1e300;
  for (int64_t p : positions) {
    double dot = 0;
    for (int64_t j = 0; j < hd; ++j) dot += double(q[j]) * h.k[p * hd + j];
    s.push_back(dot / std::sqrt(double(hd)));
    mx = std::max(mx, s.back());
  }
  double sum = 0;
  for (double& x : s) sum += (x = std::exp(x - mx));
  probs.assign(ctx, 0.0);
  out.assign(hd, 0.0);
  for (size_t i = 0; i < positions.size(); ++i) {
    probs[positions[i]] = s[i] / sum;
    for (int64_t j = 0; j < hd; ++j) out[j] += s[i] / sum * h.v[positions[i] * hd + j];
  }
}

TEST(DecodeAttention, FullMatchesReference) {
  std::mt19937 rng(1);
  const int64_t ctx = 37, hd = kDims.head_dim;
  LayerKv kv = RandomKv(ctx, rng);
  auto q = Random(kDims.num_heads * hd, rng);
  std::vector<float> out(kDims.num_heads * hd, NAN), probs(kDims.num_heads * ctx, NAN);
  DecodeAttention(kDims, kv, q.data(), ctx, nullptr, out.data(), probs.data());
  std::vector<int64_t> all(ctx);
  for (int64_t i = 0; i < ctx; ++i) all[i] = i;
  for (int64_t h = 0; h < kDims.num_heads; ++h) {
    std::vector<double> rp, ro;
    Reference(kv, h, &q[h * hd], all, ctx, rp, ro);
    for (int64_t j = 0; j < hd; ++j) EXPECT_NEAR(out[h * hd + j], ro[j], 1e-5) << h << " " << j;
    for (int64_t p = 0; p < ctx; ++p) EXPECT_NEAR(probs[h * ctx + p], rp[p], 1e-6);
  }
}

TEST(DecodeAttention, SpansRestrictEachKvHeadToItsTokens) {
  std::mt19937 rng(2);
  const int64_t ctx = 64, hd = kDims.head_dim;
  LayerKv kv = RandomKv(ctx, rng);
  auto q = Random(kDims.num_heads * hd, rng);
  const std::vector<TokenSpans> spans = {{{0, 4}, {16, 32}, {60, 64}}, {{8, 9}, {40, 64}}};
  std::vector<float> out(kDims.num_heads * hd, NAN), probs(kDims.num_heads * ctx, NAN);
  DecodeAttention(kDims, kv, q.data(), ctx, &spans, out.data(), probs.data());
  for (int64_t h = 0; h < kDims.num_heads; ++h) {
    std::vector<int64_t> pos;
    for (auto [b, e] : spans[h / 2]) {
      for (int64_t p = b; p < e; ++p) pos.push_back(p);
    }
    std::vector<double> rp, ro;
    Reference(kv, h, &q[h * hd], pos, ctx, rp, ro);
    for (int64_t j = 0; j < hd; ++j) EXPECT_NEAR(out[h * hd + j], ro[j], 1e-5);
    for (int64_t p = 0; p < ctx; ++p)
      EXPECT_NEAR(probs[h * ctx + p], rp[p], 1e-6) << "head " << h << " pos " << p;
  }
}

TEST(PrefillAttention, CausalRowsMatchReferenceAcrossChunks) {
  std::mt19937 rng(3);
  // 300 new rows after 20 cached tokens: crosses the 256-row chunk boundary.
  const int64_t start = 20, rows = 300, ctx = start + rows, hd = kDims.head_dim,
                stride = kDims.num_heads * hd;
  LayerKv kv = RandomKv(ctx, rng);
  auto q = Random(rows * stride, rng);
  const int64_t observed_rows = 5;
  std::vector<float> out(rows * stride, NAN), observed(kDims.num_heads * observed_rows * ctx, NAN);
  PrefillAttention(kDims, kv, q.data(), start, rows, out.data(), observed.data(), observed_rows);
  for (int64_t r : {0L, 1L, 255L, 256L, 299L}) {
    std::vector<int64_t> pos;
    for (int64_t p = 0; p <= start + r; ++p) pos.push_back(p);
    for (int64_t h = 0; h < kDims.num_heads; ++h) {
      std::vector<double> rp, ro;
      Reference(kv, h, &q[r * stride + h * hd], pos, ctx, rp, ro);
      for (int64_t j = 0; j < hd; ++j) EXPECT_NEAR(out[r * stride + h * hd + j], ro[j], 1e-5) << r;
      if (r >= rows - observed_rows) {
        const float* o = &observed[(h * observed_rows + r - (rows - observed_rows)) * ctx];
        for (int64_t p = 0; p < ctx; ++p) EXPECT_NEAR(o[p], rp[p], 1e-6) << r << " " << p;
      }
    }
  }
}

// Sliding window W: the query at position p sees keys p - W + 1 .. p (W keys, itself
// included), transformers' kv_idx > q_idx - W.
TEST(SlidingWindow, PrefillAndDecodeSeeTheLastWindowKeys) {
  std::mt19937 rng(4);
  AttentionDims dims = kDims;
  dims.sliding_window = 7;
  const int64_t start = 3, rows = 20, ctx = start + rows, hd = dims.head_dim,
                stride = dims.num_heads * hd;
  LayerKv kv = RandomKv(ctx, rng);
  auto q = Random(rows * stride, rng);
  std::vector<float> out(rows * stride, NAN), observed(dims.num_heads * 2 * ctx, NAN);
  PrefillAttention(dims, kv, q.data(), start, rows, out.data(), observed.data(), 2);
  for (int64_t r : {0L, 3L, 4L, 19L}) {
    const int64_t p = start + r;
    std::vector<int64_t> pos;
    for (int64_t k = std::max<int64_t>(0, p - 6); k <= p; ++k) pos.push_back(k);
    for (int64_t h = 0; h < dims.num_heads; ++h) {
      std::vector<double> rp, ro;
      Reference(kv, h, &q[r * stride + h * hd], pos, ctx, rp, ro);
      for (int64_t j = 0; j < hd; ++j) EXPECT_NEAR(out[r * stride + h * hd + j], ro[j], 1e-5) << r;
      if (r == rows - 1) {
        const float* o = &observed[(h * 2 + 1) * ctx];
        for (int64_t k = 0; k < ctx; ++k) EXPECT_NEAR(o[k], rp[k], 1e-6) << k;
      }
    }
  }
  // Decode of the last row: the same keys, also when spans select older ones.
  const float* last = &q[(rows - 1) * stride];
  const std::vector<TokenSpans> spans = {{{0, ctx}}, {{2, 5}, {18, ctx}}};
  std::vector<float> dout(stride, NAN), probs(dims.num_heads * ctx, NAN);
  DecodeAttention(dims, kv, last, ctx, nullptr, dout.data(), probs.data());
  for (int64_t j = 0; j < stride; ++j) EXPECT_NEAR(dout[j], out[(rows - 1) * stride + j], 1e-5);
  DecodeAttention(dims, kv, last, ctx, &spans, dout.data(), probs.data());
  for (int64_t h = 0; h < dims.num_heads; ++h) {
    std::vector<int64_t> pos;
    if (h / 2 == 0) {
      for (int64_t k = ctx - 7; k < ctx; ++k) pos.push_back(k);
    } else {
      for (int64_t k = 18; k < ctx; ++k) pos.push_back(k);
    }
    std::vector<double> rp, ro;
    Reference(kv, h, &last[h * hd], pos, ctx, rp, ro);
    for (int64_t j = 0; j < hd; ++j) EXPECT_NEAR(dout[h * hd + j], ro[j], 1e-5) << h;
  }
}

}  // namespace
}  // namespace apr::cpu
