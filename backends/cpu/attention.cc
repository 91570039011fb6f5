#include "backends/cpu/attention.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backends/cpu/ops.h"

namespace apr::cpu {
namespace {

// Query rows per chunk: bounds the score buffer to kChunk x context floats.
constexpr int64_t kChunk = 256;

// The first key a query sees when it and the keys before it make `context_len` tokens.
int64_t FirstVisibleKey(const AttentionDims& d, int64_t context_len) {
  return d.sliding_window > 0 ? std::max<int64_t>(0, context_len - d.sliding_window) : 0;
}

}  // namespace

void PrefillAttention(const AttentionDims& d, const LayerKv& kv, const float* q, int64_t start,
                      int64_t rows, float* out, float* observed, int64_t observed_rows) {
  const int64_t hd = d.head_dim, stride = d.num_heads * hd, group = d.num_heads / d.num_kv_heads;
  const int64_t ctx = start + rows;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t first_observed = rows - observed_rows;
  std::vector<float> scores(static_cast<size_t>(std::min(rows, kChunk)) * ctx);
  for (int64_t h = 0; h < d.num_heads; ++h) {
    const HeadKv& head = kv.heads[h / group];
    for (int64_t r0 = 0; r0 < rows; r0 += kChunk) {
      const int64_t n = std::min(kChunk, rows - r0);
      const int64_t keys = start + r0 + n;  // causal: later keys are never needed
      // scores[n][keys] = scale * Q[r0:r0+n] K[0:keys]^T
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, keys, hd, scale,
                  q + r0 * stride + h * hd, stride, head.k.data(), hd, 0.0f, scores.data(), keys);
      for (int64_t i = 0; i < n; ++i) {
        float* s = scores.data() + i * keys;
        const int64_t visible = start + r0 + i + 1;
        const int64_t first = FirstVisibleKey(d, visible);
        Softmax(s + first, visible - first);
        std::fill(s, s + first, 0.0f);
        std::fill(s + visible, s + keys, 0.0f);
        const int64_t r = r0 + i;
        if (observed != nullptr && r >= first_observed) {
          float* o = observed + (h * observed_rows + (r - first_observed)) * ctx;
          std::memcpy(o, s, sizeof(float) * keys);
          std::fill(o + keys, o + ctx, 0.0f);
        }
      }
      // out[r0:r0+n, head h] = scores V[0:keys]
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hd, keys, 1.0f, scores.data(), keys,
                  head.v.data(), hd, 0.0f, out + r0 * stride + h * hd, stride);
    }
  }
}

void DecodeAttention(const AttentionDims& d, const LayerKv& kv, const float* q, int64_t context_len,
                     const std::vector<TokenSpans>* spans, float* out, float* probs) {
  const int64_t hd = d.head_dim, group = d.num_heads / d.num_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const TokenSpans all = {{0, context_len}};
  std::vector<float> scores;
  std::vector<int64_t> positions;
  for (int64_t h = 0; h < d.num_heads; ++h) {
    const int64_t kvh = h / group;
    const HeadKv& head = kv.heads[kvh];
    const TokenSpans& sel = spans == nullptr ? all : (*spans)[kvh];
    positions.clear();
    const int64_t first = FirstVisibleKey(d, context_len);
    for (const auto& [b, e] : sel) {
      for (int64_t p = std::max(b, first); p < e; ++p) positions.push_back(p);
    }
    scores.resize(positions.size());
    const float* qh = q + h * hd;
    for (size_t i = 0; i < positions.size(); ++i) {
      const float* k = head.k.data() + positions[i] * hd;
      float dot = 0;
      for (int64_t j = 0; j < hd; ++j) dot += qh[j] * k[j];
      scores[i] = dot * scale;
    }
    Softmax(scores.data(), static_cast<int64_t>(scores.size()));
    float* oh = out + h * hd;
    std::fill(oh, oh + hd, 0.0f);
    for (size_t i = 0; i < positions.size(); ++i) {
      const float* v = head.v.data() + positions[i] * hd;
      const float p = scores[i];
      for (int64_t j = 0; j < hd; ++j) oh[j] += p * v[j];
    }
    if (probs != nullptr) {
      float* ph = probs + h * context_len;
      std::fill(ph, ph + context_len, 0.0f);
      for (size_t i = 0; i < positions.size(); ++i) ph[positions[i]] = scores[i];
    }
  }
}

}  // namespace apr::cpu
