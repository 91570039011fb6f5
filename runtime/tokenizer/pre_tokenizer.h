// Pre-tokenizers: cut text into the pieces that BPE merges within, as the
// `pre_tokenizer` section of tokenizer.json describes.
#ifndef APRUNTIME_RUNTIME_TOKENIZER_PRE_TOKENIZER_H_
#define APRUNTIME_RUNTIME_TOKENIZER_PRE_TOKENIZER_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/tokenizer/regex.h"

namespace apr {

// GPT-2's pattern, used by ByteLevel when `use_regex` is set.
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces every piece by its sub-pieces, in order; no piece is ever empty.
  virtual void Apply(std::vector<std::string>* pieces) const = 0;
};

// What Split does with the matches of its pattern (SplitDelimiterBehavior).
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// ByteLevel: optionally prepends a space to every piece that lacks one, optionally
// splits with kGpt2Pattern, then spells each piece in the byte-level alphabet.
std::unique_ptr<PreTokenizer> MakeByteLevelPreTokenizer(bool add_prefix_space, bool use_regex);

// Split: cuts each piece at the matches of `pattern` (or, with `invert`, at what lies
// between them) and keeps, drops or attaches the matches as `behavior` says.
std::unique_ptr<PreTokenizer> MakeSplitPreTokenizer(Regex pattern, SplitBehavior behavior,
                                                    bool invert);

// Sequence: each step in turn.
std::unique_ptr<PreTokenizer> MakeSequencePreTokenizer(
    std::vector<std::unique_ptr<PreTokenizer>> steps);

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_TOKENIZER_PRE_TOKENIZER_H_
