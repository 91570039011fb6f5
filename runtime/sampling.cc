#include "runtime/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace apr {

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  if (!(p.temperature >= 0.0f) || std::isinf(p.temperature)) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature must be >= 0 and finite, got ", p.temperature));
  }
  if (p.top_k < 0)
    return absl::InvalidArgumentError(absl::StrCat("top_k must be >= 0, got ", p.top_k));
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", p.top_p));
  }
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingParams& params) : p_(params), rng_(params.seed) {}

std::vector<std::pair<int32_t, double>> Sampler::Distribution(
    absl::Span<const float> logits) const {
  std::vector<std::pair<int32_t, double>> dist;
  if (p_.temperature == 0.0f) return dist;
  const int32_t n = static_cast<int32_t>(logits.size());
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  auto more_likely = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  const int32_t keep = p_.top_k > 0 ? std::min(p_.top_k, n) : n;
  std::partial_sort(order.begin(), order.begin() + keep, order.end(), more_likely);
  order.resize(keep);

  const double mx = logits[order[0]] / static_cast<double>(p_.temperature);
  double sum = 0;
  dist.reserve(keep);
  for (int32_t id : order) {
    const double e = std::exp(logits[id] / static_cast<double>(p_.temperature) - mx);
    dist.emplace_back(id, e);
    sum += e;
  }
  for (auto& d : dist) d.second /= sum;
  if (p_.top_p < 1.0f) {
    double mass = 0;
    size_t cut = 0;
    while (cut < dist.size()) {
      mass += dist[cut++].second;
      if (mass >= p_.top_p) break;
    }
    dist.resize(cut);
    for (auto& d : dist) d.second /= mass;
  }
  return dist;
}

int32_t Sampler::Sample(absl::Span<const float> logits) {
  if (greedy()) return ArgMaxToken(logits);
  const auto dist = Distribution(logits);
  // 53 random bits -> a double in [0, 1): the same stream on every platform.
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  double acc = 0;
  for (const auto& [id, prob] : dist) {
    acc += prob;
    if (u < acc) return id;
  }
  return dist.back().first;  // rounding left u just above the total
}

}  // namespace apr
