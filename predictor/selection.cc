#include "predictor/selection.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace apr::predictor {

absl::Status ValidateSelectionConfig(const SelectionConfig& c) {
  if (c.block <= 0) return absl::InvalidArgumentError(absl::StrCat("block must be > 0, got ", c.block));
  if (c.sink < 0 || c.sink % c.block != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sink must be a non-negative multiple of block (", c.block, "), got ", c.sink));
  }
  if (c.local < 0 || c.local % c.block != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "local must be a non-negative multiple of block (", c.block, "), got ", c.local));
  }
  if (c.dense_layers < 0)
    return absl::InvalidArgumentError(absl::StrCat("dense_layers must be >= 0, got ", c.dense_layers));
  if (c.history <= 0)
    return absl::InvalidArgumentError(absl::StrCat("history must be > 0, got ", c.history));
  const int64_t rest = c.budget - c.sink - c.local;
  if (rest < 0 || rest % c.block != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("budget ", c.budget, " must be sink (", c.sink, ") + local (", c.local,
                     ") + a non-negative multiple of block (", c.block, ")"));
  }
  return absl::OkStatus();
}

StepLayout MakeStepLayout(const SelectionConfig& c, int64_t context_len) {
  StepLayout l;
  l.context_len = context_len;
  l.history_blocks = CeilDiv(std::max<int64_t>(context_len - 1, 0), c.block);
  l.cand_begin = c.sink / c.block;
  l.cand_end = std::max(l.cand_begin, l.history_blocks - c.local / c.block);
  l.num_select = std::min(c.budget_blocks(), l.num_candidates());
  return l;
}

TokenSpans SpansFor(const SelectionConfig& c, int64_t context_len,
                    absl::Span<const int64_t> blocks) {
  TokenSpans raw;
  raw.reserve(blocks.size() + 2);
  if (c.sink > 0) raw.emplace_back(0, std::min(c.sink, context_len));
  if (c.local > 0) raw.emplace_back(std::max<int64_t>(0, context_len - c.local), context_len);
  for (int64_t b : blocks) {
    const int64_t begin = b * c.block, end = std::min(begin + c.block, context_len);
    if (begin < end) raw.emplace_back(begin, end);
  }
  std::sort(raw.begin(), raw.end());
  TokenSpans out;
  for (const auto& s : raw) {
    if (s.first >= s.second) continue;
    if (!out.empty() && s.first <= out.back().second) {
      out.back().second = std::max(out.back().second, s.second);
    } else {
      out.push_back(s);
    }
  }
  return out;
}

std::vector<int64_t> TopK(absl::Span<const float> scores, int64_t k) {
  const int64_t n = static_cast<int64_t>(scores.size());
  k = std::clamp<int64_t>(k, 0, n);
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  auto key = [&](int64_t i) {
    const float s = scores[i];
    return std::isnan(s) ? -INFINITY : s;
  };
  auto better = [&](int64_t a, int64_t b) {
    const float sa = key(a), sb = key(b);
    return sa > sb || (sa == sb && a < b);
  };
  std::nth_element(idx.begin(), idx.begin() + k, idx.end(), better);
  idx.resize(k);
  std::sort(idx.begin(), idx.end());
  return idx;
}

std::vector<int64_t> CoveredCandidates(const StepLayout& layout, int64_t block,
                                       const TokenSpans& spans) {
  std::vector<int64_t> out;
  size_t s = 0;
  for (int64_t b = layout.cand_begin; b < layout.cand_end; ++b) {
    const int64_t begin = b * block, end = begin + block;
    while (s < spans.size() && spans[s].second <= begin) ++s;
    if (s < spans.size() && spans[s].first <= begin && spans[s].second >= end) out.push_back(b);
  }
  return out;
}

}  // namespace apr::predictor
