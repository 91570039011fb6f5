// The backend-neutral face of a loaded model: sequences with their KV caches, prefill,
// and batched decode. The CPU reference (backends/cpu) and the CUDA backend implement it;
// generation, the scheduler and the evaluation harness are written against it.
#ifndef APRUNTIME_RUNTIME_DECODER_H_
#define APRUNTIME_RUNTIME_DECODER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "runtime/attention_hooks.h"
#include "runtime/model_config.h"
#include "runtime/sampling.h"

namespace apr {

// The KV cache and position of one sequence. Backends subclass it.
class Sequence {
 public:
  virtual ~Sequence() = default;
  // Tokens processed so far (the length of the KV cache).
  virtual int64_t length() const = 0;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual const ModelConfig& config() const = 0;
  // A short name for logs ("cpu", "cuda:0").
  virtual std::string device() const = 0;

  // `hooks` (may be null, not owned, must outlive the sequence) choose the tokens each
  // decode step attends to and observe attention; see attention_hooks.h.
  virtual std::unique_ptr<Sequence> NewSequence(AttentionHooks* hooks = nullptr) = 0;

  // Appends `tokens` to `seq`. Writes the logits of the last token to `last_logits`
  // ([vocab]) and, when `all_logits` is given, those of every token ([n][vocab]).
  virtual absl::Status Prefill(Sequence& seq, absl::Span<const int32_t> tokens,
                               std::vector<float>* last_logits,
                               std::vector<float>* all_logits = nullptr) = 0;

  // The prompt of `seq` is complete: no Prefill follows before its first decode step. A
  // backend may release what only prefill needed (the CUDA backend's offloaded path frees
  // the sequence's staging copy of the whole prompt's KV here, so that prompts admitted
  // one after another do not each hold one until the next decode step).
  virtual void EndPrompt(Sequence& seq) { (void)seq; }

  // One token for each sequence (all distinct); logits is [batch][vocab].
  virtual absl::Status DecodeBatch(absl::Span<Sequence* const> seqs,
                                   absl::Span<const int32_t> tokens,
                                   std::vector<float>* logits) = 0;

  // DecodeBatch for a caller that samples on the host only where it must: `argmax` gets
  // every row's greedy pick (ArgMaxToken), and `logits` the [batch][vocab] logits only when
  // `need_logits` (else it is cleared). A backend that picks on the device then copies one
  // id per row instead of the logits (the CUDA backend: 4 MB a step at batch 8, 128K vocab).
  virtual absl::Status DecodeBatchArgMax(absl::Span<Sequence* const> seqs,
                                         absl::Span<const int32_t> tokens, bool need_logits,
                                         std::vector<int32_t>* argmax, std::vector<float>* logits) {
    std::vector<float> all;
    std::vector<float>* out = need_logits ? logits : &all;
    if (absl::Status s = DecodeBatch(seqs, tokens, out); !s.ok()) return s;
    const size_t vocab = static_cast<size_t>(config().vocab_size);
    argmax->clear();
    for (size_t i = 0; i < seqs.size(); ++i) {
      argmax->push_back(ArgMaxToken(absl::MakeConstSpan(*out).subspan(i * vocab, vocab)));
    }
    if (!need_logits) logits->clear();
    return absl::OkStatus();
  }

  absl::Status Decode(Sequence& seq, int32_t token, std::vector<float>* logits) {
    Sequence* s = &seq;
    return DecodeBatch(absl::MakeConstSpan(&s, 1), absl::MakeConstSpan(&token, 1), logits);
  }
};

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_DECODER_H_
