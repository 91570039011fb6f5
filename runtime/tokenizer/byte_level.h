// GPT-2's reversible map between the 256 byte values and 256 printable Unicode
// characters. Byte-level BPE vocabularies (GPT-2, Llama-3) spell tokens in this alphabet,
// so that every byte string has a spelling: space is "Ġ" (U+0120), newline "Ċ" (U+010A).
#ifndef APRUNTIME_RUNTIME_TOKENIZER_BYTE_LEVEL_H_
#define APRUNTIME_RUNTIME_TOKENIZER_BYTE_LEVEL_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace apr::byte_level {

// The character standing for `byte`, UTF-8 encoded.
std::string_view CharOf(uint8_t byte);

// Appends the byte-level spelling of `bytes` to `out`.
void AppendSpelling(std::string_view bytes, std::string* out);

// Appends the bytes that `token` spells, as the ByteLevel decoder of Hugging Face
// tokenizers does: a token with any character outside the alphabet is taken as it is.
void AppendDecoded(std::string_view token, std::string* out);

}  // namespace apr::byte_level

#endif  // APRUNTIME_RUNTIME_TOKENIZER_BYTE_LEVEL_H_
