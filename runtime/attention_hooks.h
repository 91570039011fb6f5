// How a decoder lets a sparse-attention policy choose what each decode step attends to,
// and see the attention that was computed. Backends call these; predictor/ implements them.
// With no hooks (nullptr) a backend does full attention and materialises no probabilities.
#ifndef APRUNTIME_RUNTIME_ATTENTION_HOOKS_H_
#define APRUNTIME_RUNTIME_ATTENTION_HOOKS_H_

#include <cstdint>
#include <utility>
#include <vector>

namespace apr {

// Token positions one KV head attends to: sorted, disjoint, half-open [begin, end) spans.
using TokenSpans = std::vector<std::pair<int64_t, int64_t>>;

// Read-only view of one layer's keys at a decode step: keys(kv_head) points at
// [context_len][head_dim] floats, RoPE applied. Policies that need keys (Quest, oracle)
// read them here; the CPU backend owns the memory.
struct KeysView {
  const float* const* per_kv_head = nullptr;
  int64_t context_len = 0;
  int64_t head_dim = 0;
  const float* keys(int64_t kv_head) const { return per_kv_head[kv_head]; }
};

struct DecodeStep {
  int64_t layer = 0;
  int64_t position = 0;     // position of the token being decoded (context_len - 1)
  int64_t context_len = 0;  // tokens in the cache, the new one included
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  const float* queries = nullptr;  // [num_heads][head_dim], RoPE applied, unscaled
  KeysView keys;
};

class AttentionHooks {
 public:
  virtual ~AttentionHooks() = default;

  // Before a decode step's attention in `step.layer`: fill `spans` (one entry per KV head)
  // to restrict attention, or leave it empty for full attention. The new token's own
  // position must be inside every KV head's spans.
  virtual void SelectTokens(const DecodeStep& step, std::vector<TokenSpans>* spans) = 0;

  // After the attention: `probs` is [num_heads][context_len], the softmax actually used,
  // zero outside the selected spans. Called only when WantsProbabilities().
  virtual void ObserveDecode(const DecodeStep& step, const float* probs) = 0;
  virtual bool WantsProbabilities() const = 0;

  // Prefill: how many of the last prompt rows' attention to report (0: none).
  virtual int64_t PrefillRowsWanted() const = 0;
  // `probs` is [num_heads][rows][prompt_len] for the last `rows` query positions of the
  // prompt, causal (zero above the diagonal).
  virtual void ObservePrefill(int64_t layer, int64_t prompt_len, int64_t rows, int64_t num_heads,
                              const float* probs) = 0;
};

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_ATTENTION_HOOKS_H_
