// A fixed sparse-attention selection for exercising the offload path without the learned
// predictor (predictor/): StreamingLLM's sink (the first 64 tokens) and local window (the
// last 64), plus every `stride`-th block. With `rotate`, the strided blocks shift by one
// every token (blocks b with b % stride == context_len % stride), so every step selects
// blocks the previous one did not: the worst case for a block cache, and work for the
// prefetch. Optionally it prefetches, after layer l's attention at step t, the complete
// blocks it will select at step t + 1 into a TierKvOffload (cross-token prefetch, as the
// decode step does with the predictor).
#ifndef APRUNTIME_KVSTORE_TESTING_STRIDED_POLICY_H_
#define APRUNTIME_KVSTORE_TESTING_STRIDED_POLICY_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kvstore/tier_kv_offload.h"
#include "runtime/attention_hooks.h"

namespace apr::kvstore::testing {

class StridedPolicy : public AttentionHooks {
 public:
  // `prefetch` (may be null, not owned): where to prefetch step t + 1's blocks.
  StridedPolicy(int64_t stride, bool rotate, TierKvOffload* prefetch = nullptr)
      : stride_(stride), rotate_(rotate), prefetch_(prefetch) {}

  // The selection at `context_len` tokens, sorted and disjoint.
  static TokenSpans Select(int64_t context_len, int64_t stride, bool rotate);

  void SelectTokens(const DecodeStep& step, std::vector<TokenSpans>* spans) override;
  void ObserveDecode(const DecodeStep& step, const float* probs) override;
  bool WantsProbabilities() const override { return prefetch_ != nullptr; }
  int64_t PrefillRowsWanted() const override { return 0; }
  void ObservePrefill(int64_t, int64_t, int64_t, int64_t, const float*) override {}

  // The first prefetch error (hooks cannot return one).
  const absl::Status& prefetch_status() const { return prefetch_status_; }

 private:
  const int64_t stride_;
  const bool rotate_;
  TierKvOffload* const prefetch_;
  absl::Status prefetch_status_;
};

}  // namespace apr::kvstore::testing

#endif  // APRUNTIME_KVSTORE_TESTING_STRIDED_POLICY_H_
