// The token budget and the block geometry every selection policy shares (docs/PREDICTOR.md,
// "Budget and candidates"): sink tokens, a local window, and the top-scoring candidate
// blocks between them, all within `budget` tokens.
#ifndef APRUNTIME_PREDICTOR_SELECTION_H_
#define APRUNTIME_PREDICTOR_SELECTION_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "runtime/algorithm_constants.h"
#include "runtime/attention_hooks.h"

namespace apr::predictor {

struct SelectionConfig {
  int64_t block = kBlockTokens;  // tokens per block
  int64_t sink = kSinkTokens;    // tokens [0, sink) are always attended; a multiple of `block`
  int64_t local = kLocalTokens;  // the last `local` tokens are always attended; a multiple of `block`
  int64_t history = kHistoryRows;        // H: rows of attention history
  int64_t budget = kDefaultBudgetTokens;  // tokens: sink + local + block * (selected blocks)
  // Layers [0, dense_layers) attend to everything (the official code's `skip_2layer`
  // option is dense_layers = 2); 0: every layer is sparse.
  int64_t dense_layers = 0;

  // Blocks the budget leaves for selection: (budget - sink - local) / block.
  int64_t budget_blocks() const { return (budget - sink - local) / block; }
};

// InvalidArgument unless block > 0, sink and local are non-negative multiples of block,
// history > 0, and budget - sink - local is a non-negative multiple of block.
absl::Status ValidateSelectionConfig(const SelectionConfig& c);

inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// What a decode step at context length L (the new token included) chooses from.
// The candidates are the blocks of the history the predictor sees, minus sink and local:
// the history before this step covers L - 1 tokens, i.e. N = ceil((L - 1) / block) blocks,
// and the candidates are blocks [sink / block, N - local / block) (the official code's
// cut). They are always complete blocks.
struct StepLayout {
  int64_t context_len = 0;
  int64_t history_blocks = 0;  // N
  int64_t cand_begin = 0;      // first candidate block
  int64_t cand_end = 0;        // one past the last candidate block (== cand_begin: none)
  int64_t num_select = 0;      // min(budget_blocks, candidates)

  int64_t num_candidates() const { return cand_end - cand_begin; }
};

StepLayout MakeStepLayout(const SelectionConfig& c, int64_t context_len);

// The tokens one KV head attends to: [0, min(sink, L)) + [max(0, L - local), L) + the
// tokens of each block in `blocks` (absolute block indices, any order, clipped to L),
// as sorted, merged spans.
TokenSpans SpansFor(const SelectionConfig& c, int64_t context_len, absl::Span<const int64_t> blocks);

// Indices of the `k` largest scores, ties to the lower index; NaN ranks below every number.
// Returned in ascending index order. k is clipped to scores.size().
std::vector<int64_t> TopK(absl::Span<const float> scores, int64_t k);

// Candidate blocks (absolute indices) fully covered by `spans`.
std::vector<int64_t> CoveredCandidates(const StepLayout& layout, int64_t block,
                                       const TokenSpans& spans);

}  // namespace apr::predictor

#endif  // APRUNTIME_PREDICTOR_SELECTION_H_
