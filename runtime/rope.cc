#include "runtime/rope.h"

#include <cmath>

namespace apr {

std::vector<float> RopeInverseFrequencies(const ModelConfig& c) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> inv(half);
  const float base = static_cast<float>(c.rope_theta);
  for (int64_t i = 0; i < half; ++i) {
    float exponent = static_cast<float>(2 * i) / static_cast<float>(c.head_dim);
    inv[i] = 1.0f / std::pow(base, exponent);
  }
  const RopeScaling& s = c.rope_scaling;
  if (s.type == RopeScaling::Type::kLinear) {
    for (float& f : inv) f = f / static_cast<float>(s.factor);
  } else if (s.type == RopeScaling::Type::kLlama3) {
    // transformers' _compute_llama3_parameters, step for step in float32.
    const float factor = static_cast<float>(s.factor);
    const float low = static_cast<float>(s.low_freq_factor);
    const float high = static_cast<float>(s.high_freq_factor);
    const float old_len = static_cast<float>(s.original_max_position_embeddings);
    const float low_wavelen = old_len / low;
    const float high_wavelen = old_len / high;
    constexpr float kTwoPi = static_cast<float>(2.0 * 3.141592653589793);
    for (float& f : inv) {
      const float wavelen = kTwoPi / f;
      float scaled = wavelen > low_wavelen ? f / factor : f;
      const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
      if (medium) {
        const float smooth = (old_len / wavelen - low) / (high - low);
        scaled = (1.0f - smooth) * scaled / factor + smooth * scaled;
      }
      f = scaled;
    }
  }
  return inv;
}

RopeTable MakeRopeTable(const std::vector<float>& inv_freq, int64_t begin, int64_t end) {
  RopeTable t;
  t.begin = begin;
  t.half_dim = static_cast<int64_t>(inv_freq.size());
  const size_t n = static_cast<size_t>(end - begin) * t.half_dim;
  t.cos.resize(n);
  t.sin.resize(n);
  for (int64_t p = begin; p < end; ++p) {
    for (int64_t i = 0; i < t.half_dim; ++i) {
      const float angle = static_cast<float>(p) * inv_freq[i];  // float32, as the reference
      const size_t k = static_cast<size_t>(p - begin) * t.half_dim + i;
      t.cos[k] = static_cast<float>(std::cos(static_cast<double>(angle)));
      t.sin[k] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  }
  return t;
}

void ApplyRope(const RopeTable& table, int64_t position, int64_t n_vectors, int64_t head_dim,
               float* x) {
  const int64_t half = head_dim / 2;
  const float* c = table.cos.data() + (position - table.begin) * half;
  const float* s = table.sin.data() + (position - table.begin) * half;
  for (int64_t v = 0; v < n_vectors; ++v) {
    float* h = x + v * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const float a = h[i], b = h[i + half];
      h[i] = a * c[i] - b * s[i];
      h[i + half] = b * c[i] + a * s[i];
    }
  }
}

}  // namespace apr
