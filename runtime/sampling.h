// Next-token sampling: greedy, temperature, top-k, top-p, reproducible with a seed.
#ifndef APRUNTIME_RUNTIME_SAMPLING_H_
#define APRUNTIME_RUNTIME_SAMPLING_H_

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace apr {

struct SamplingParams {
  float temperature = 0.0f;  // 0 means greedy: the arg max, lowest id on ties
  int32_t top_k = 0;         // keep the k most likely tokens; 0 keeps all
  float top_p = 1.0f;        // keep the smallest most-likely set with this much mass; 1 keeps all
  uint64_t seed = 0;
};

// The greedy pick: the arg max, the lowest id among equal maxima (std::max_element keeps
// the first). The CUDA backend's LaunchArgMaxRows follows the same rule.
inline int32_t ArgMaxToken(absl::Span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

// InvalidArgument for a negative temperature or top_k, or top_p outside (0, 1].
absl::Status ValidateSamplingParams(const SamplingParams& p);

// Applies, in transformers' order, temperature, then top-k, then top-p, then draws.
class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  int32_t Sample(absl::Span<const float> logits);
  // Greedy samplers pick ArgMaxToken and draw no random numbers.
  bool greedy() const { return p_.temperature == 0.0f; }

  // The distribution Sample draws from (after every filter), for tests: id -> probability,
  // most likely first. Empty for greedy.
  std::vector<std::pair<int32_t, double>> Distribution(absl::Span<const float> logits) const;

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
};

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_SAMPLING_H_
