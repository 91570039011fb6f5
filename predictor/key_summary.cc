#include "predictor/key_summary.h"

#include <algorithm>
#include <cmath>

namespace apr::predictor {

void BlockKeySummary::Update(const float* keys, int64_t len) {
  const int64_t complete = len / block_;
  if (complete <= blocks_) return;
  min_.resize(complete * head_dim_);
  max_.resize(complete * head_dim_);
  mean_.resize(complete * head_dim_);
  for (int64_t b = blocks_; b < complete; ++b) {
    float* mn = &min_[b * head_dim_];
    float* mx = &max_[b * head_dim_];
    float* me = &mean_[b * head_dim_];
    const float* k0 = keys + b * block_ * head_dim_;
    for (int64_t j = 0; j < head_dim_; ++j) mn[j] = mx[j] = k0[j], me[j] = 0.0f;
    for (int64_t t = 0; t < block_; ++t) {
      const float* k = k0 + t * head_dim_;
      for (int64_t j = 0; j < head_dim_; ++j) {
        mn[j] = std::min(mn[j], k[j]);
        mx[j] = std::max(mx[j], k[j]);
        me[j] += k[j];
      }
    }
    const float inv = 1.0f / static_cast<float>(block_);
    for (int64_t j = 0; j < head_dim_; ++j) me[j] *= inv;
  }
  blocks_ = complete;
}

float BlockKeySummary::UpperBound(int64_t b, const float* q) const {
  const float* mn = min(b);
  const float* mx = max(b);
  float s = 0.0f;
  for (int64_t j = 0; j < head_dim_; ++j) s += std::max(q[j] * mn[j], q[j] * mx[j]);
  return s;
}

float BlockKeySummary::CenterL2(int64_t b, const float* q) const {
  const float* mn = min(b);
  const float* mx = max(b);
  float dot = 0.0f, spread = 0.0f;
  for (int64_t j = 0; j < head_dim_; ++j) {
    const float r = q[j] * 0.5f * (mx[j] - mn[j]);
    dot += q[j] * 0.5f * (mx[j] + mn[j]);
    spread += r * r;
  }
  return dot + std::sqrt(spread);
}

float BlockKeySummary::MeanDot(int64_t b, const float* q) const {
  const float* me = mean(b);
  float s = 0.0f;
  for (int64_t j = 0; j < head_dim_; ++j) s += q[j] * me[j];
  return s;
}

}  // namespace apr::predictor
