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
  // Compiles an Oniguruma (Ruby syntax) pattern, rewritten first by OnigurumaToPcre2.
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

// Rewrites what Oniguruma (in Hugging Face tokenizers) and PCRE2 with PCRE2_UCP match
// differently, as measured by tools/onig_unicode/: \s \S (White_Space), \w \W (Alphabetic,
// M, Nd, Pc), \d \D, \h \H (hex digit), \b \B, POSIX classes, and general-category
// properties \p{L} \P{L} \p{^L}, each completed by the code points of Unicode versions
// newer than PCRE2's (onig_unicode.inc). Left as PCRE2 reads them: negated forms inside
// a [...] class, [:graph:], [:print:], script and other properties.
std::string OnigurumaToPcre2(std::string_view pattern);

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_TOKENIZER_REGEX_H_
