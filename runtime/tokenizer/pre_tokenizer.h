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

// A piece of text and whether it starts at offset 0 of the original input (what
// Metaspace's prepend_scheme "first" asks).
struct PreToken {
  std::string text;
  bool at_origin = false;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces every piece by its sub-pieces, in order; no piece is ever empty.
  virtual void ApplyTo(std::vector<PreToken>* pieces) const = 0;
  // The same on plain strings, the first of them taken to start the input.
  void Apply(std::vector<std::string>* pieces) const;
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

// Metaspace: spaces become `replacement`, which is put before a piece that does not start
// with it (prepend "always", or "first": only the piece at the start of the input;
// "never": none); with `split`, pieces are cut before every `replacement`.
enum class PrependScheme { kAlways, kFirst, kNever };
std::unique_ptr<PreTokenizer> MakeMetaspacePreTokenizer(std::string replacement,
                                                        PrependScheme prepend, bool split);

// Sequence: each step in turn.
std::unique_ptr<PreTokenizer> MakeSequencePreTokenizer(
    std::vector<std::unique_ptr<PreTokenizer>> steps);

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_TOKENIZER_PRE_TOKENIZER_H_
