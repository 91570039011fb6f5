// Regular expressions of tokenizer.json, run by PCRE2 the way Hugging Face tokenizers runs
// them with Oniguruma: same character classes, same iteration over matches.
#ifndef APRUNTIME_RUNTIME_TOKENIZER_REGEX_H_
#define APRUNTIME_RUNTIME_TOKENIZER_REGEX_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

struct pcre2_real_code_8;

namespace apr {

class Regex {
 public:
  // Compiles an Oniguruma (Ruby syntax) pattern. PCRE2 gives \s, \w and \h other
  // meanings than Oniguruma does, so those are rewritten first (OnigurumaToPcre2).
  static absl::StatusOr<Regex> FromOniguruma(std::string_view pattern);
  // Matches `text` literally (Split's "String" pattern).
  static absl::StatusOr<Regex> Literal(std::string_view text);

  struct Match {
    size_t start;
    size_t end;
  };
  // All matches in `text` (valid UTF-8), as the Rust `onig` crate's find_iter yields
  // them: leftmost-first, scanning on from the end of the last match, and skipping an
  // empty match that sits right where the last match ended.
  std::vector<Match> FindAll(std::string_view text) const;

 private:
  explicit Regex(std::shared_ptr<pcre2_real_code_8> code) : code_(std::move(code)) {}
  std::shared_ptr<pcre2_real_code_8> code_;
};

// Rewrites the escapes whose meaning differs between Oniguruma with Unicode and PCRE2 with
// PCRE2_UCP: \s and \S (Oniguruma: White_Space; PCRE2 adds U+180E), \w and \W (Oniguruma:
// Letter, Mark, Number, Connector_Punctuation; PCRE2: letters, numbers, '_'), \h and \H
// (Oniguruma: hex digit; PCRE2: horizontal space). Negated forms inside a [...] class
// have no PCRE2 spelling and keep PCRE2's meaning.
std::string OnigurumaToPcre2(std::string_view pattern);

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_TOKENIZER_REGEX_H_
