// Reads the parts of a Hugging Face BPE tokenizer.json (byte-level or SentencePiece-style)
// and rejects the rest by name.
#ifndef APRUNTIME_RUNTIME_TOKENIZER_TOKENIZER_JSON_H_
#define APRUNTIME_RUNTIME_TOKENIZER_TOKENIZER_JSON_H_

#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/tokenizer/added_tokens.h"
#include "runtime/tokenizer/bpe.h"
#include "runtime/tokenizer/decoder.h"
#include "runtime/tokenizer/normalizer.h"
#include "runtime/tokenizer/post_processor.h"
#include "runtime/tokenizer/pre_tokenizer.h"

namespace apr {

struct TokenizerSpec {
  Bpe::Vocab vocab;
  Bpe::Merges merges;
  Bpe::Options bpe_options;
  std::vector<AddedToken> added_tokens;  // in file order, with the ids the file gives
  std::unique_ptr<Normalizer> normalizer;  // null: text unchanged
  std::unique_ptr<PreTokenizer> pre_tokenizer;  // null: the whole text is one piece
  std::unique_ptr<Decoder> decoder;  // null: tokens joined with spaces
  PostProcessor post_processor;
};

// Errors (bad JSON, wrong types, unsupported components) say which part is at fault;
// the caller adds the file name.
absl::StatusOr<TokenizerSpec> ParseTokenizerJson(std::string_view json);

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_TOKENIZER_TOKENIZER_JSON_H_
