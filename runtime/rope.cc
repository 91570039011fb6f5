#include "runtime/rope.h"

#include <algorithm>
#include <cmath>

namespace apr {
namespace {

constexpr double kPi = 3.141592653589793;

// transformers' defaults where a yarn config leaves the field out (or writes 0).
constexpr double kYarnBetaFast = 32, kYarnBetaSlow = 1;

// base^(-2i / dim) for each i < dim / 2, in float32 as transformers computes it.
std::vector<float> DefaultFrequencies(double base, int64_t dim) {
  std::vector<float> inv(dim / 2);
  for (int64_t i = 0; i < dim / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    inv[i] = 1.0f / std::pow(static_cast<float>(base), exponent);
  }
  return inv;
}

// transformers' _compute_llama3_parameters, step for step in float32.
void ApplyLlama3(const RopeScaling& s, std::vector<float>& inv) {
  const float factor = static_cast<float>(s.factor);
  const float low = static_cast<float>(s.low_freq_factor);
  const float high = static_cast<float>(s.high_freq_factor);
  const float old_len = static_cast<float>(s.original_max_position_embeddings);
  const float low_wavelen = old_len / low;
  const float high_wavelen = old_len / high;
  constexpr float kTwoPi = static_cast<float>(2.0 * kPi);
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

// Dynamic NTK (_compute_dynamic_ntk_parameters): the base grows with the context once it
// passes max_position_embeddings.
std::vector<float> DynamicFrequencies(const ModelConfig& c, int64_t context_len) {
  const double dim = static_cast<double>(c.head_dim), max_pos = c.max_position_embeddings;
  const double seq = std::max<double>(static_cast<double>(context_len), max_pos);
  const double f = c.rope_scaling.factor;
  const double base = c.rope_theta * std::pow(f * seq / max_pos - (f - 1), dim / (dim - 2));
  return DefaultFrequencies(base, c.head_dim);
}

double YarnMscale(double scale, double mscale) {
  return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

// Yarn (_compute_yarn_parameters, transformers 5): interpolated frequencies below the
// correction range, extrapolated above it, a float32 linear ramp between.
RopeParams YarnParams(const ModelConfig& c) {
  const RopeScaling& s = c.rope_scaling;
  const int64_t dim = c.head_dim;
  const double base = c.rope_theta;
  const double beta_fast = s.beta_fast != 0 ? s.beta_fast : kYarnBetaFast;
  const double beta_slow = s.beta_slow != 0 ? s.beta_slow : kYarnBetaSlow;
  const double orig = static_cast<double>(s.original_max_position_embeddings);
  auto correction_dim = [&](double rotations) {
    return dim * std::log(orig / (rotations * 2 * kPi)) / (2 * std::log(base));
  };
  double low = correction_dim(beta_fast), high = correction_dim(beta_slow);
  if (s.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;  // transformers' guard against a zero-width ramp

  RopeParams p;
  p.inv_freq.resize(dim / 2);
  const float factor = static_cast<float>(s.factor);
  for (int64_t i = 0; i < dim / 2; ++i) {
    const float pos_freq = std::pow(static_cast<float>(base),
                                    static_cast<float>(2 * i) / static_cast<float>(dim));
    const float extrapolation = 1.0f / pos_freq;
    const float interpolation = 1.0f / (factor * pos_freq);
    const float ramp = std::clamp((static_cast<float>(i) - static_cast<float>(low)) /
                                      static_cast<float>(high - low),
                                  0.0f, 1.0f);
    const float extrapolation_factor = 1.0f - ramp;
    p.inv_freq[i] = interpolation * (1.0f - extrapolation_factor) +
                    extrapolation * extrapolation_factor;
  }
  double af = s.attention_factor;
  if (af == 0) {
    af = s.mscale != 0 && s.mscale_all_dim != 0
             ? YarnMscale(s.factor, s.mscale) / YarnMscale(s.factor, s.mscale_all_dim)
             : YarnMscale(s.factor, 1.0);
  }
  p.attention_factor = static_cast<float>(af);
  return p;
}

// LongRoPE (_compute_longrope_parameters): per-frequency divisors, long past the original
// length; the attention factor depends on the config only.
RopeParams LongRopeParams(const ModelConfig& c, int64_t context_len) {
  const RopeScaling& s = c.rope_scaling;
  const bool long_context = context_len > s.original_max_position_embeddings;
  const std::vector<double>& ext = long_context ? s.long_factor : s.short_factor;
  RopeParams p;
  p.inv_freq.resize(c.head_dim / 2);
  for (int64_t i = 0; i < c.head_dim / 2; ++i) {
    const float shape = static_cast<float>(2 * i) / static_cast<float>(c.head_dim);
    p.inv_freq[i] =
        1.0f / (static_cast<float>(ext[i]) * std::pow(static_cast<float>(c.rope_theta), shape));
  }
  double af = s.attention_factor;
  if (af == 0) {
    const double orig = static_cast<double>(s.original_max_position_embeddings);
    af = s.factor <= 1 ? 1.0 : std::sqrt(1 + std::log(s.factor) / std::log(orig));
  }
  p.attention_factor = static_cast<float>(af);
  return p;
}

}  // namespace

RopeParams RopeForContext(const ModelConfig& c, int64_t context_len) {
  const RopeScaling& s = c.rope_scaling;
  switch (s.type) {
    case RopeScaling::Type::kYarn:
      return YarnParams(c);
    case RopeScaling::Type::kLongRope:
      return LongRopeParams(c, context_len);
    case RopeScaling::Type::kDynamic:
      return {DynamicFrequencies(c, context_len), 1.0f};
    default:
      break;
  }
  RopeParams p{DefaultFrequencies(c.rope_theta, c.head_dim), 1.0f};
  if (s.type == RopeScaling::Type::kLinear) {
    for (float& f : p.inv_freq) f = f / static_cast<float>(s.factor);
  } else if (s.type == RopeScaling::Type::kLlama3) {
    ApplyLlama3(s, p.inv_freq);
  }
  return p;
}

std::vector<float> RopeInverseFrequencies(const ModelConfig& c) {
  return RopeForContext(c, 1).inv_freq;
}

RopeTable MakeRopeTable(const std::vector<float>& inv_freq, int64_t begin, int64_t end,
                        float scale) {
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
      t.cos[k] = static_cast<float>(std::cos(static_cast<double>(angle))) * scale;
      t.sin[k] = static_cast<float>(std::sin(static_cast<double>(angle))) * scale;
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
