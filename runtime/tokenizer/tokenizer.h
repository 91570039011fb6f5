// BPE tokenizer read from a Hugging Face tokenizer.json (byte-level or SentencePiece-style).
#ifndef APRUNTIME_RUNTIME_TOKENIZER_TOKENIZER_H_
#define APRUNTIME_RUNTIME_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace apr {

class Tokenizer {
 public:
  // Parses tokenizer.json of a BPE tokenizer, byte-level (GPT-2, Llama-3, Qwen2,
  // DeepSeek-V3) or SentencePiece-style (Llama-2, Mistral): the parts listed in
  // docs/TOKENIZER.md. Anything else is an error that names the file and the
  // unsupported part.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromFile(const std::string& path);
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view json,
                                                             std::string_view source);
  ~Tokenizer();

  // Text to ids, as tokenizers' `encode(text, add_special_tokens=...)` does: added tokens
  // are matched first, the rest is pre-tokenized and merged.
  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens = true) const;
  // Ids to text as bytes: the decoder's output before Hugging Face turns bytes that are
  // not UTF-8 into U+FFFD (so it may end in an incomplete UTF-8 sequence, which the
  // stream decoder needs). Special tokens are dropped when `skip_special_tokens`.
  std::string Decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;
  // Ids to text exactly as tokenizers' `decode` gives it (always valid UTF-8).
  std::string DecodeText(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  int32_t vocab_size() const;  // largest id + 1, added tokens included
  std::optional<int32_t> TokenToId(std::string_view token) const;
  // The token string as stored in the vocabulary (byte-level alphabet for BPE tokens).
  std::optional<std::string> IdToToken(int32_t id) const;
  bool IsSpecial(int32_t id) const;

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Turns a stream of ids into text pieces that are always whole UTF-8: bytes of a
// character split across tokens are held back until the character is complete.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = true);
  // Returns the text that became complete with `id` (possibly empty).
  std::string Push(int32_t id);
  // Whatever is still held back (an incomplete sequence at the end of generation is
  // returned with U+FFFD for the invalid bytes).
  std::string Flush();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  std::string pending_;
  // The last id that decoded to something, decoded again with each new id: decoders
  // that treat the first token apart (Metaspace, Strip) then see the new one as
  // inner text.
  std::optional<int32_t> context_;
};

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_TOKENIZER_TOKENIZER_H_
