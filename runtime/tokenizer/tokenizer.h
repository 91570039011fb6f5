// Byte-level BPE tokenizer read from a Hugging Face tokenizer.json (GPT-2 / Llama-3 style).
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
  // Parses tokenizer.json. Supports: model BPE (vocab, merges as "a b" strings or pairs,
  // ignore_merges), pre_tokenizer ByteLevel / Split(regex) / Sequence of them, decoder
  // ByteLevel, added_tokens (special or not), post_processor TemplateProcessing /
  // ByteLevel / Sequence (for the BOS a template adds). Anything else is an error that
  // names the file and the unsupported part.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromFile(const std::string& path);
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view json,
                                                             std::string_view source);
  ~Tokenizer();

  // Text to ids, as tokenizers' `encode(text, add_special_tokens=...)` does: added tokens
  // are matched first, the rest is pre-tokenized and merged.
  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens = true) const;
  // Ids to text (bytes; may end in an incomplete UTF-8 sequence). Special tokens are
  // dropped when `skip_special_tokens`.
  std::string Decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

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
};

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_TOKENIZER_TOKENIZER_H_
