// Decoders: turn the token strings of some ids back into text, as the `decoder` section
// of tokenizer.json describes (Hugging Face's decode_chain: each step maps the list of
// token strings to a new list; the result is their concatenation).
#ifndef APRUNTIME_RUNTIME_TOKENIZER_DECODER_H_
#define APRUNTIME_RUNTIME_TOKENIZER_DECODER_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/tokenizer/regex.h"

namespace apr {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Rewrites `tokens`. With `raw`, bytes that do not form UTF-8 are kept as they are
  // (Tokenizer::Decode, the stream decoder); without it each step turns them into
  // U+FFFD exactly where Hugging Face does (Tokenizer::DecodeText).
  virtual void Apply(std::vector<std::string>* tokens, bool raw) const = 0;
};

// ByteLevel: all tokens become one string of the bytes they spell (from_utf8_lossy
// unless raw); a token with a character outside the byte alphabet is taken as it is.
std::unique_ptr<Decoder> MakeByteLevelDecoder();

// ByteFallback: runs of "<0xNN>" tokens become the bytes they name; a run that is not
// UTF-8 becomes one U+FFFD per byte (unless raw).
std::unique_ptr<Decoder> MakeByteFallbackDecoder();

// Fuse: all tokens become one.
std::unique_ptr<Decoder> MakeFuseDecoder();

// Strip: removes up to `start` leading and `stop` trailing `content` characters from
// every token.
std::unique_ptr<Decoder> MakeStripDecoder(char32_t content, size_t start, size_t stop);

// Replace: every match of `pattern` in every token becomes `content` (nullopt matches
// nothing).
std::unique_ptr<Decoder> MakeReplaceDecoder(std::optional<Regex> pattern, std::string content);

// Metaspace: `replacement` becomes a space, except in the first token, where it is
// dropped everywhere unless `prepend_scheme_never`.
std::unique_ptr<Decoder> MakeMetaspaceDecoder(std::string replacement, bool prepend_scheme_never);

// Sequence: each step in turn.
std::unique_ptr<Decoder> MakeSequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps);

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_TOKENIZER_DECODER_H_
