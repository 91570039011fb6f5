// Helpers shared by the quality harness and the trace recorder: corpus files, the
// prefill fan-out, pass-key prompts.
#ifndef APRUNTIME_PREDICTOR_EVAL_EVAL_UTIL_H_
#define APRUNTIME_PREDICTOR_EVAL_EVAL_UTIL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/attention_hooks.h"

namespace apr::predictor {

struct CorpusDoc {
  std::string id, source, text;
};

// A corpus split written by tools/model/build_corpus.py: one {"id", "source", "text"} per line.
absl::StatusOr<std::vector<CorpusDoc>> ReadCorpusJsonl(const std::string& path);

// One prefill observed by many hooks: PrefillRowsWanted is the largest request, and each
// hook gets the last rows it asked for, repacked as [num_heads][rows][prompt_len]. Decode
// calls are not expected (a sequence forked after the prefill decodes under each hook).
class PrefillFanOut : public AttentionHooks {
 public:
  explicit PrefillFanOut(std::vector<AttentionHooks*> hooks) : hooks_(std::move(hooks)) {}
  void SelectTokens(const DecodeStep&, std::vector<TokenSpans>* spans) override { spans->clear(); }
  void ObserveDecode(const DecodeStep&, const float*) override {}
  bool WantsProbabilities() const override { return false; }
  int64_t PrefillRowsWanted() const override;
  void ObservePrefill(int64_t layer, int64_t prompt_len, int64_t rows, int64_t num_heads,
                      const float* probs) override;

 private:
  std::vector<AttentionHooks*> hooks_;
  std::vector<float> buf_;
};

// The pass-key format of tools/model/passkey.py (the bundled model was trained on it).
std::string PasskeyNeedle(const std::string& key);
std::string PasskeyQuestion();
std::string PasskeyAnswer(const std::string& key);
// The first run of 5 digits in `text` after leading spaces, or "".
std::string FirstDigits(const std::string& text);

}  // namespace apr::predictor

#endif  // APRUNTIME_PREDICTOR_EVAL_EVAL_UTIL_H_
