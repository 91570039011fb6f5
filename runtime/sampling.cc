#include "runtime/sampling.h"

#include <algorithm>
#include <cmath>
#include <functional>
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

namespace {

// The kept tokens (top_k, or all) in decreasing probability, ties to the lower id, produced
// lazily: a draw usually stops after a few dozen tokens of a 128K vocabulary, so a heap
// (built in O(n), O(log n) a pop) replaces the full sort the walk needed before (21 ms a
// row on the development machine; bench/sampling_bench).
class ProbabilityOrder {
 public:
  ProbabilityOrder(absl::Span<const float> logits, float temperature, int32_t top_k)
      : logits_(logits), inv_t_(1.0 / static_cast<double>(temperature)) {
    const int32_t n = static_cast<int32_t>(logits.size());
    ids_.resize(n);
    std::iota(ids_.begin(), ids_.end(), 0);
    less_likely_ = [this](int32_t a, int32_t b) { return MoreLikely(b, a); };
    if (top_k > 0 && top_k < n) {
      // A small k: one pass against a k-heap (partial_sort) beats building a heap of all.
      std::partial_sort(ids_.begin(), ids_.begin() + top_k, ids_.end(),
                        [this](int32_t a, int32_t b) { return MoreLikely(a, b); });
      ids_.resize(top_k);
      std::reverse(ids_.begin(), ids_.end());  // least likely first: Next pops the back
      sorted_ = true;
    } else {
      // std's heap keeps its largest element first: "largest" is the most likely token.
      std::make_heap(ids_.begin(), ids_.end(), less_likely_);
    }
    max_ = logits_[sorted_ ? ids_.back() : ids_.front()] * inv_t_;
    for (int32_t id : ids_) sum_ += std::exp(logits_[id] * inv_t_ - max_);
  }

  bool done() const { return ids_.empty(); }

  // The most likely token not yet returned, with its probability among the kept tokens.
  std::pair<int32_t, double> Next() {
    if (!sorted_) std::pop_heap(ids_.begin(), ids_.end(), less_likely_);
    const int32_t id = ids_.back();
    ids_.pop_back();
    return {id, std::exp(logits_[id] * inv_t_ - max_) / sum_};
  }

 private:
  bool MoreLikely(int32_t a, int32_t b) const {
    return logits_[a] > logits_[b] || (logits_[a] == logits_[b] && a < b);
  }

  absl::Span<const float> logits_;
  double inv_t_;
  std::vector<int32_t> ids_;  // a heap, or sorted least likely first (top_k)
  bool sorted_ = false;
  std::function<bool(int32_t, int32_t)> less_likely_;
  double max_ = 0, sum_ = 0;
};

// The tokens top_p keeps (all when top_p is 1), most likely first, and their mass.
std::vector<std::pair<int32_t, double>> TopPPrefix(ProbabilityOrder& order, float top_p,
                                                   double* mass) {
  std::vector<std::pair<int32_t, double>> kept;
  *mass = 0;
  while (!order.done()) {
    kept.push_back(order.Next());
    *mass += kept.back().second;
    if (top_p < 1.0f && *mass >= top_p) break;
  }
  return kept;
}

}  // namespace

std::vector<std::pair<int32_t, double>> Sampler::Distribution(
    absl::Span<const float> logits) const {
  if (p_.temperature == 0.0f || logits.empty()) return {};
  ProbabilityOrder order(logits, p_.temperature, p_.top_k);
  double mass = 0;
  auto dist = TopPPrefix(order, p_.top_p, &mass);
  if (p_.top_p < 1.0f) {
    for (auto& d : dist) d.second /= mass;
  }
  return dist;
}

int32_t Sampler::Sample(absl::Span<const float> logits) {
  if (greedy()) return ArgMaxToken(logits);
  // 53 random bits -> a double in [0, 1): the same stream on every platform.
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  ProbabilityOrder order(logits, p_.temperature, p_.top_k);
  int32_t last = -1;
  double acc = 0;
  if (p_.top_p >= 1.0f) {  // no cut: walk only as far as the draw lands
    while (!order.done()) {
      const auto [id, prob] = order.Next();
      acc += prob;
      last = id;
      if (u < acc) return id;
    }
    return last;  // rounding left u just above the total
  }
  double mass = 0;
  for (const auto& [id, prob] : TopPPrefix(order, p_.top_p, &mass)) {
    acc += prob / mass;
    last = id;
    if (u < acc) return id;
  }
  return last;
}

}  // namespace apr
