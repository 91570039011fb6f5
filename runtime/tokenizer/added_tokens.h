// Added tokens (special or not): found in the raw text before pre-tokenization, as
// Hugging Face's AddedVocabulary does.
#ifndef APRUNTIME_RUNTIME_TOKENIZER_ADDED_TOKENS_H_
#define APRUNTIME_RUNTIME_TOKENIZER_ADDED_TOKENS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace apr {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false;  // match only where no word character touches it
  bool lstrip = false;       // swallow the whitespace before it
  bool rstrip = false;       // swallow the whitespace after it
  bool normalized = true;    // matched in a second pass, in the normalized text
  bool special = false;      // dropped by Decode(skip_special_tokens)
};

// A stretch of the input: an added token's id, or text left for the model (id < 0).
struct Segment {
  std::string_view text;
  int32_t id = -1;
};

class AddedTokenMatcher {
 public:
  // `tokens` with their final ids; empty contents are ignored.
  explicit AddedTokenMatcher(const std::vector<AddedToken>& tokens);
  ~AddedTokenMatcher();
  AddedTokenMatcher(AddedTokenMatcher&&) noexcept;
  AddedTokenMatcher& operator=(AddedTokenMatcher&&) noexcept;

  // Cuts `text` into segments: first at the tokens with normalized == false, then the
  // remaining text at those with normalized == true. Within a pass matches are
  // leftmost-longest and do not overlap. Empty segments are left out.
  std::vector<Segment> Split(std::string_view text) const;
  // One pass: cuts `text` at the tokens with normalized == `normalized` (the caller
  // normalizes the text between the passes, and gives normalized tokens their
  // normalized contents).
  std::vector<Segment> SplitPass(std::string_view text, bool normalized) const;

 private:
  class Trie;
  std::vector<Trie> passes_;  // [non-normalized, normalized]
};

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_TOKENIZER_ADDED_TOKENS_H_
