#include "kvstore/testing/strided_policy.h"

#include <algorithm>

namespace apr::kvstore::testing {

TokenSpans StridedPolicy::Select(int64_t ctx, int64_t stride, bool rotate) {
  constexpr int64_t kSink = kSinkTokens, kLocal = kLocalTokens, kBlock = kKvBlockTokens;
  std::vector<std::pair<int64_t, int64_t>> raw = {{0, std::min(kSink, ctx)},
                                                  {std::max<int64_t>(0, ctx - kLocal), ctx}};
  for (int64_t b = rotate ? ctx % stride : 0; b * kBlock < ctx; b += stride) {
    raw.push_back({b * kBlock, std::min(ctx, b * kBlock + kBlock)});
  }
  std::sort(raw.begin(), raw.end());
  TokenSpans out;
  for (const auto& s : raw) {
    if (!out.empty() && s.first <= out.back().second) {
      out.back().second = std::max(out.back().second, s.second);
    } else {
      out.push_back(s);
    }
  }
  return out;
}

void StridedPolicy::SelectTokens(const DecodeStep& step, std::vector<TokenSpans>* spans) {
  spans->assign(step.num_kv_heads, Select(step.context_len, stride_, rotate_));
}

void StridedPolicy::ObserveDecode(const DecodeStep& step, const float*) {
  if (prefetch_ == nullptr || !prefetch_status_.ok()) return;
  // Blocks of step t + 1's selection that are complete (written) now.
  const int64_t complete = step.context_len / kKvBlockTokens;
  std::vector<KvBlockRef> refs;
  for (int64_t h = 0; h < step.num_kv_heads; ++h) {
    int64_t last = -1;
    for (const auto& [b, e] : Select(step.context_len + 1, stride_, rotate_)) {
      for (int64_t blk = b / kKvBlockTokens; blk * kKvBlockTokens < e && blk < complete; ++blk) {
        if (blk > last) refs.push_back({step.layer, h, blk});
        last = std::max(last, blk);
      }
    }
  }
  prefetch_status_ = prefetch_->Prefetch(refs);
}

}  // namespace apr::kvstore::testing
