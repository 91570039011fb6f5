// Post-processing of one encoded sequence: the special tokens a TemplateProcessing
// template puts around it (the BOS of Llama-3) when add_special_tokens is set.
#ifndef APRUNTIME_RUNTIME_TOKENIZER_POST_PROCESSOR_H_
#define APRUNTIME_RUNTIME_TOKENIZER_POST_PROCESSOR_H_

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace apr {

// A piece of TemplateProcessing's `single` template: the sequence itself ($A) or the
// ids of a special token.
struct TemplatePiece {
  bool is_sequence = false;
  std::vector<int32_t> ids;  // when !is_sequence
};
using Template = std::vector<TemplatePiece>;

class PostProcessor {
 public:
  // Without a template (no processor, or only ByteLevel ones, which move offsets and
  // nothing else) ids pass unchanged.
  explicit PostProcessor(std::optional<Template> single = std::nullopt)
      : single_(std::move(single)) {}

  // Without add_special_tokens the special pieces are left out, as Hugging Face does.
  std::vector<int32_t> Apply(std::vector<int32_t> ids, bool add_special_tokens) const;
  // Every id the template can add (for checking them against the vocabulary).
  std::vector<int32_t> TemplateIds() const;

 private:
  std::optional<Template> single_;
};

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_TOKENIZER_POST_PROCESSOR_H_
