// Measures a selection policy against the true attention, separately from the policy:
// a wrapper hook that, at every decode step, computes the full softmax of the current
// queries over every key (from the step's KeysView) and scores the spans the policy chose.
// The decode itself still attends only to those spans.
//
// Attention recall: the share of a query head's true attention mass inside its KV head's
// selected tokens, averaged over layers, query heads and steps (1 for full attention).
// Top-k hit rate: with k = the step's num_select, the share of the k candidate blocks with
// the most true mass (summed over the KV head's query heads; ties to the lower block) that
// the policy selected, averaged over layers, KV heads and steps with k > 0.
#ifndef APRUNTIME_PREDICTOR_MEASURE_H_
#define APRUNTIME_PREDICTOR_MEASURE_H_

#include <cstdint>
#include <vector>

#include "predictor/policy.h"
#include "runtime/attention_hooks.h"

namespace apr::predictor {

struct SelectionStats {
  double recall_sum = 0;      // over (layer, query head, step)
  double fixed_mass_sum = 0;  // true mass in sink + local window, same count
  int64_t recall_count = 0;
  double hit_sum = 0;  // over (layer, KV head, step) with num_select > 0
  int64_t hit_count = 0;
  std::vector<double> layer_recall_sum;  // [layer]
  std::vector<int64_t> layer_recall_count;

  void Merge(const SelectionStats& o);
  double recall() const { return recall_count ? recall_sum / recall_count : 0.0; }
  double fixed_mass() const { return recall_count ? fixed_mass_sum / recall_count : 0.0; }
  double hit_rate() const { return hit_count ? hit_sum / hit_count : 0.0; }
  double layer_recall(int64_t l) const {
    return layer_recall_count[l] ? layer_recall_sum[l] / layer_recall_count[l] : 0.0;
  }
};

class MeasuredHooks : public AttentionHooks {
 public:
  // Neither is owned; both must outlive this object.
  MeasuredHooks(SelectionPolicy* policy, SelectionStats* stats);

  // Steps are measured only while enabled (on by default).
  void set_enabled(bool on) { enabled_ = on; }

  void SelectTokens(const DecodeStep& step, std::vector<TokenSpans>* spans) override;
  void ObserveDecode(const DecodeStep& step, const float* probs) override {
    policy_->ObserveDecode(step, probs);
  }
  bool WantsProbabilities() const override { return policy_->WantsProbabilities(); }
  int64_t PrefillRowsWanted() const override { return policy_->PrefillRowsWanted(); }
  void ObservePrefill(int64_t layer, int64_t prompt_len, int64_t rows, int64_t num_heads,
                      const float* probs) override {
    policy_->ObservePrefill(layer, prompt_len, rows, num_heads, probs);
  }

 private:
  SelectionPolicy* policy_;
  SelectionStats* stats_;
  bool enabled_ = true;
  std::vector<float> probs_, mass_;
};

// The measurement of one step on its own (used by MeasuredHooks and the tests): adds to
// `stats` for `spans` (empty: full attention) given the true probabilities
// [num_heads][context_len].
void MeasureStep(const SelectionConfig& config, int64_t layer, int64_t num_heads,
                 int64_t num_kv_heads, int64_t context_len, const float* true_probs,
                 const std::vector<TokenSpans>& spans, SelectionStats* stats);

}  // namespace apr::predictor

#endif  // APRUNTIME_PREDICTOR_MEASURE_H_
