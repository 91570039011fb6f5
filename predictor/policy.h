// Sparse-attention selection policies: one object per sequence, implementing the decoder's
// AttentionHooks. All of them (except full attention) attend to the same token budget:
// sink + local window + the `num_select` candidate blocks they rank highest
// (predictor/selection.h; docs/PREDICTOR.md).
//
// With grouped-query attention every policy selects per KV head: whatever per-query-head
// signal it uses is pooled over the group (by max, except the oracle, which sums the
// group's attention mass so that it maximises the group's recall).
#ifndef APRUNTIME_PREDICTOR_POLICY_H_
#define APRUNTIME_PREDICTOR_POLICY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "predictor/cnn.h"
#include "predictor/history.h"
#include "predictor/key_summary.h"
#include "predictor/selection.h"
#include "runtime/algorithm_constants.h"
#include "runtime/attention_hooks.h"
#include "runtime/model_config.h"

namespace apr::predictor {

struct ModelDims {
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t group() const { return num_heads / num_kv_heads; }
};
ModelDims DimsOf(const ModelConfig& c);

// softmax(q . k / sqrt(head_dim)) of every query head over all `step.context_len` keys:
// probs is resized to [num_heads][context_len] (float32, OpenBLAS sgemv for q . K).
void FullAttentionProbs(const DecodeStep& step, std::vector<float>* probs);

class SelectionPolicy : public AttentionHooks {
 public:
  SelectionPolicy(std::string name, const SelectionConfig& config, const ModelDims& dims);

  const std::string& name() const { return name_; }
  const SelectionConfig& config() const { return config_; }
  const ModelDims& dims() const { return dims_; }

  // Fills one TokenSpans per KV head: sink + local + the chosen candidate blocks. When all
  // candidates fit in the budget they are all chosen without scoring.
  void SelectTokens(const DecodeStep& step, std::vector<TokenSpans>* spans) override;
  void ObserveDecode(const DecodeStep& step, const float* probs) override {}
  bool WantsProbabilities() const override { return false; }
  int64_t PrefillRowsWanted() const override { return 0; }
  void ObservePrefill(int64_t layer, int64_t prompt_len, int64_t rows, int64_t num_heads,
                      const float* probs) override {}

  // The spans chosen at this layer's most recent decode step (one per KV head).
  const std::vector<TokenSpans>& last_spans(int64_t layer) const { return last_spans_[layer]; }

 protected:
  // scores[kv_head][i] ranks candidate block layout.cand_begin + i (higher is kept).
  // Called only when num_select < num_candidates. `scores` arrives sized
  // [num_kv_heads][num_candidates].
  virtual void ScoreCandidates(const DecodeStep& step, const StepLayout& layout,
                               std::vector<std::vector<float>>& scores) = 0;

  const std::string name_;
  const SelectionConfig config_;
  const ModelDims dims_;
  std::vector<std::vector<TokenSpans>> last_spans_;  // [layer][kv_head]

 private:
  std::vector<std::vector<float>> scores_;
};

// Full attention: leaves the spans empty (the decoder attends to everything).
class FullAttentionPolicy : public SelectionPolicy {
 public:
  FullAttentionPolicy(const SelectionConfig& config, const ModelDims& dims)
      : SelectionPolicy("full", config, dims) {}
  void SelectTokens(const DecodeStep& step, std::vector<TokenSpans>* spans) override;

 protected:
  void ScoreCandidates(const DecodeStep&, const StepLayout&,
                       std::vector<std::vector<float>>&) override {}
};

// StreamingLLM at the same budget: sink + the most recent blocks (the local window
// extended by the budget's blocks).
class StreamingPolicy : public SelectionPolicy {
 public:
  StreamingPolicy(const SelectionConfig& config, const ModelDims& dims)
      : SelectionPolicy("streaming", config, dims) {}

 protected:
  void ScoreCandidates(const DecodeStep& step, const StepLayout& layout,
                       std::vector<std::vector<float>>& scores) override;
};

// H2O-style heavy hitters: each block's accumulated attention mass (per step and KV head:
// the max over the group's query heads of the block's summed probability), over the
// prompt rows the decoder reports (`prefill_rows`, all by default) and every decode
// step's attention as actually computed (blocks left out stop accumulating, as H2O's
// evicted tokens do).
class H2OPolicy : public SelectionPolicy {
 public:
  H2OPolicy(const SelectionConfig& config, const ModelDims& dims,
            int64_t prefill_rows = int64_t{1} << 40);
  bool WantsProbabilities() const override { return true; }
  void ObserveDecode(const DecodeStep& step, const float* probs) override;
  int64_t PrefillRowsWanted() const override { return prefill_rows_; }
  void ObservePrefill(int64_t layer, int64_t prompt_len, int64_t rows, int64_t num_heads,
                      const float* probs) override;

  const std::vector<double>& accumulated(int64_t layer, int64_t kv_head) const {
    return acc_[layer][kv_head];
  }

 protected:
  void ScoreCandidates(const DecodeStep& step, const StepLayout& layout,
                       std::vector<std::vector<float>>& scores) override;

 private:
  void Accumulate(int64_t layer, const float* probs, int64_t len, int64_t stride);
  int64_t prefill_rows_;
  std::vector<std::vector<std::vector<double>>> acc_;  // [layer][kv_head][block]
  std::vector<float> sums_;
};

// SnapKV-style: blocks scored once at prefill from an observation window (the last
// `window` prompt rows): per query head the window's summed attention to each token,
// average-pooled over `kernel` neighbouring tokens (zero padded), summed per block, max
// over the group. Fixed for the whole decode; blocks written during decode score 0 (they
// are kept only while inside the local window: the budget is fixed).
class SnapKVPolicy : public SelectionPolicy {
 public:
  SnapKVPolicy(const SelectionConfig& config, const ModelDims& dims, int64_t window = 32,
               int64_t kernel = 7);
  int64_t PrefillRowsWanted() const override { return window_; }
  void ObservePrefill(int64_t layer, int64_t prompt_len, int64_t rows, int64_t num_heads,
                      const float* probs) override;

 protected:
  void ScoreCandidates(const DecodeStep& step, const StepLayout& layout,
                       std::vector<std::vector<float>>& scores) override;

 private:
  int64_t window_, kernel_;
  std::vector<std::vector<std::vector<float>>> block_scores_;  // [layer][kv_head][block]
};

// Quest: per block and channel the min and max key; a block's score is the upper bound
// sum_j max(q_j min_j, q_j max_j) with the current query, max over the group.
class QuestPolicy : public SelectionPolicy {
 public:
  QuestPolicy(const SelectionConfig& config, const ModelDims& dims);

 protected:
  void ScoreCandidates(const DecodeStep& step, const StepLayout& layout,
                       std::vector<std::vector<float>>& scores) override;

 private:
  std::vector<std::vector<BlockKeySummary>> summaries_;  // [layer][kv_head]
};

// Oracle top-k: the current step's true attention (full q . K), each block's probability
// mass summed over the group's query heads. The recall upper bound at this budget.
class OraclePolicy : public SelectionPolicy {
 public:
  OraclePolicy(const SelectionConfig& config, const ModelDims& dims)
      : SelectionPolicy("oracle", config, dims) {}

 protected:
  void ScoreCandidates(const DecodeStep& step, const StepLayout& layout,
                       std::vector<std::vector<float>>& scores) override;

 private:
  std::vector<float> probs_;
};

// Where the calibration rows (every `calibration_step`-th decode step) come from.
enum class CalibrationSource {
  kNone,      // never: every row is the attention actually computed (sparse)
  kFull,      // the full attention row, as the official code does (needs every key)
  kQuest,     // sparse row; unselected blocks estimated from the Quest bound of their keys
  kMeanKey,   // sparse row; unselected blocks estimated from q . (mean key of the block)
  kCenterL2,  // sparse row; unselected blocks estimated as the CUDA offload path does
};
std::string_view CalibrationSourceName(CalibrationSource s);
absl::StatusOr<CalibrationSource> ParseCalibrationSource(std::string_view s);

struct PredictorOptions {
  int64_t calibration_step = kDefaultCalibrationStep;  // 0: never
  CalibrationSource calibration = CalibrationSource::kFull;
  // Of the blocks a step selects, this many are chosen at the step itself by the Quest
  // bound of the current query among the blocks the CNN left out (docs/QUALITY.md: the
  // history cannot foresee first-time retrieval). The rest come from the CNN, one step
  // ahead as always. 0: the CNN chooses every block.
  int64_t query_blocks = 0;
};

// AttentionPredictor (docs/DESIGN.md section 2): per (layer, KV head) an attention history of
// H block max-pooled rows; the CNN scores the candidate blocks from the history.
class AttentionPredictorPolicy : public SelectionPolicy {
 public:
  // `cnn` is not owned and must outlive the policy.
  AttentionPredictorPolicy(const SelectionConfig& config, const ModelDims& dims,
                           const PredictorCnn* cnn, const PredictorOptions& options,
                           std::string name = "predictor");

  bool WantsProbabilities() const override { return true; }
  void ObserveDecode(const DecodeStep& step, const float* probs) override;
  int64_t PrefillRowsWanted() const override { return config_.history; }
  void ObservePrefill(int64_t layer, int64_t prompt_len, int64_t rows, int64_t num_heads,
                      const float* probs) override;

  const AttentionHistory& history(int64_t layer, int64_t kv_head) const {
    return history_[layer][kv_head];
  }
  // Decode steps seen by `layer` since the last prefill.
  int64_t decode_steps(int64_t layer) const { return decode_steps_[layer]; }
  // Whether the current step of `layer` (after SelectTokens) is a calibration step.
  bool IsCalibrationStep(int64_t layer) const;

  void SelectTokens(const DecodeStep& step, std::vector<TokenSpans>* spans) override;

 protected:
  void ScoreCandidates(const DecodeStep& step, const StepLayout& layout,
                       std::vector<std::vector<float>>& scores) override;

 private:
  // Re-ranks `scores` so that the top selection is the CNN's best blocks plus
  // options_.query_blocks blocks by the current query's Quest bound.
  void AddQueryBlocks(const DecodeStep& step, const StepLayout& layout,
                      std::vector<std::vector<float>>& scores);
  // The approximate calibration row of one KV head (kQuest / kMeanKey), written into `row`
  // which holds the sparse pooled row on entry.
  void ApproximateRow(const DecodeStep& step, const float* probs, int64_t kv_head, float* row);

  const PredictorCnn* cnn_;
  PredictorOptions options_;
  std::vector<std::vector<AttentionHistory>> history_;   // [layer][kv_head]
  std::vector<std::vector<BlockKeySummary>> summaries_;  // [layer][kv_head] (approx sources)
  std::vector<int64_t> decode_steps_;                    // [layer]
  // Per (layer, KV head): the CNN maps of the last prediction, the candidate range it
  // covered and the history pushes since, so that a history that only shifted by one row
  // is re-scored incrementally (PredictorCnn::PredictShifted; same scores).
  struct CnnCache {
    CnnWorkspace ws;
    int64_t cand_begin = -1, cand_end = -1;
    int64_t pushes = 1 << 30;
  };
  std::vector<std::vector<CnnCache>> cache_;  // [layer][kv_head]
  std::vector<float> input_, row_, full_;
};

// Policies by name: full, streaming, h2o, snapkv, quest, oracle, predictor (full
// calibration), predictor-quest, predictor-mean, predictor-center, predictor-nocal, and
// predictor-hybrid (full calibration; a quarter of the blocks, at least one, by the
// current query's Quest bound). `cnn` is needed by the
// predictor policies only.
struct PolicyFactoryOptions {
  SelectionConfig selection;
  ModelDims dims;
  const PredictorCnn* cnn = nullptr;
  int64_t calibration_step = kDefaultCalibrationStep;
};
absl::StatusOr<std::unique_ptr<SelectionPolicy>> MakePolicy(std::string_view name,
                                                            const PolicyFactoryOptions& options);
const std::vector<std::string>& AllPolicyNames();

}  // namespace apr::predictor

#endif  // APRUNTIME_PREDICTOR_POLICY_H_
