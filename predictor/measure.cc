#include "predictor/measure.h"

#include <algorithm>

namespace apr::predictor {

void SelectionStats::Merge(const SelectionStats& o) {
  recall_sum += o.recall_sum;
  fixed_mass_sum += o.fixed_mass_sum;
  recall_count += o.recall_count;
  hit_sum += o.hit_sum;
  hit_count += o.hit_count;
  if (layer_recall_sum.size() < o.layer_recall_sum.size()) {
    layer_recall_sum.resize(o.layer_recall_sum.size(), 0.0);
    layer_recall_count.resize(o.layer_recall_count.size(), 0);
  }
  for (size_t l = 0; l < o.layer_recall_sum.size(); ++l) {
    layer_recall_sum[l] += o.layer_recall_sum[l];
    layer_recall_count[l] += o.layer_recall_count[l];
  }
}

MeasuredHooks::MeasuredHooks(SelectionPolicy* policy, SelectionStats* stats)
    : policy_(policy), stats_(stats) {}

void MeasuredHooks::SelectTokens(const DecodeStep& step, std::vector<TokenSpans>* spans) {
  policy_->SelectTokens(step, spans);
  if (!enabled_) return;
  FullAttentionProbs(step, &probs_);
  MeasureStep(policy_->config(), step.layer, step.num_heads, step.num_kv_heads, step.context_len,
              probs_.data(), *spans, stats_);
}

namespace {

double MassIn(const float* p, const TokenSpans& spans) {
  double s = 0;
  for (const auto& [b, e] : spans)
    for (int64_t t = b; t < e; ++t) s += p[t];
  return s;
}

}  // namespace

void MeasureStep(const SelectionConfig& config, int64_t layer, int64_t num_heads,
                 int64_t num_kv_heads, int64_t context_len, const float* true_probs,
                 const std::vector<TokenSpans>& spans, SelectionStats* stats) {
  const int64_t group = num_heads / num_kv_heads, len = context_len, b = config.block;
  const StepLayout layout = MakeStepLayout(config, len);
  const TokenSpans all = {{0, len}};
  const TokenSpans fixed = SpansFor(config, len, {});
  if (static_cast<int64_t>(stats->layer_recall_sum.size()) <= layer) {
    stats->layer_recall_sum.resize(layer + 1, 0.0);
    stats->layer_recall_count.resize(layer + 1, 0);
  }
  std::vector<float> mass(layout.num_candidates());
  for (int64_t g = 0; g < num_kv_heads; ++g) {
    const TokenSpans& sel = spans.empty() ? all : spans[g];
    std::fill(mass.begin(), mass.end(), 0.0f);
    for (int64_t h = g * group; h < (g + 1) * group; ++h) {
      const float* p = true_probs + h * len;
      const double r = MassIn(p, sel);
      stats->recall_sum += r;
      stats->fixed_mass_sum += MassIn(p, fixed);
      stats->recall_count += 1;
      stats->layer_recall_sum[layer] += r;
      stats->layer_recall_count[layer] += 1;
      for (int64_t i = 0; i < layout.num_candidates(); ++i) {
        const int64_t begin = (layout.cand_begin + i) * b;
        float s = 0.0f;
        for (int64_t t = begin; t < begin + b; ++t) s += p[t];
        mass[i] += s;
      }
    }
    if (layout.num_select > 0) {
      const std::vector<int64_t> best = TopK(mass, layout.num_select);
      const std::vector<int64_t> chosen = CoveredCandidates(layout, b, sel);
      int64_t hits = 0;
      for (int64_t i : best) {
        hits += std::binary_search(chosen.begin(), chosen.end(), layout.cand_begin + i) ? 1 : 0;
      }
      stats->hit_sum += static_cast<double>(hits) / layout.num_select;
      stats->hit_count += 1;
    }
  }
}

}  // namespace apr::predictor
