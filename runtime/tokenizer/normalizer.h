// Normalizers: rewrite text before added tokens (normalized: true) are matched and before
// pre-tokenization, as the `normalizer` section of tokenizer.json describes.
#ifndef APRUNTIME_RUNTIME_TOKENIZER_NORMALIZER_H_
#define APRUNTIME_RUNTIME_TOKENIZER_NORMALIZER_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/tokenizer/regex.h"

namespace apr {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Rewrites `text` (valid UTF-8) in place.
  virtual void Apply(std::string* text) const = 0;
};

// The four Unicode normalization forms, computed by ICU (see docs/TOKENIZER.md for the
// Unicode version it knows against the Rust unicode-normalization crate).
enum class UnicodeForm { kNfc, kNfd, kNfkc, kNfkd };
std::unique_ptr<Normalizer> MakeUnicodeNormalizer(UnicodeForm form);

// Prepend: puts `prefix` before non-empty text.
std::unique_ptr<Normalizer> MakePrependNormalizer(std::string prefix);

// Replace: every match of `pattern` (a String pattern as Regex::Literal, empty ones
// included; nullopt matches nothing) becomes `content`.
std::unique_ptr<Normalizer> MakeReplaceNormalizer(std::optional<Regex> pattern,
                                                  std::string content);

// Sequence: each step in turn (none: text unchanged).
std::unique_ptr<Normalizer> MakeSequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps);

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_TOKENIZER_NORMALIZER_H_
