// UTF-8 scanning shared by the encoder (input repair) and the stream decoder.
#ifndef APRUNTIME_RUNTIME_TOKENIZER_UTF8_H_
#define APRUNTIME_RUNTIME_TOKENIZER_UTF8_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace apr::utf8 {

// What starts at some position of a byte string.
struct Sequence {
  size_t length = 0;       // bytes consumed: the character, or the invalid bytes
  bool valid = false;      // a whole, well-formed character
  bool truncated = false;  // a well-formed prefix that the end of the input cut short
  char32_t code_point = 0; // when valid
};

// Classifies the bytes at s[pos] (pos < s.size()). Invalid input is consumed as a
// "maximal subpart" (Unicode 3.9, as Rust's from_utf8_lossy and Python's decoder do),
// so one U+FFFD stands for each returned invalid sequence.
Sequence Next(std::string_view s, size_t pos);

bool IsValid(std::string_view s);

// Appends the UTF-8 encoding of `c` (a Unicode scalar value) to `out`.
void AppendCodePoint(char32_t c, std::string* out);

// `s` with every invalid sequence (truncated ones included) replaced by U+FFFD.
std::string Repair(std::string_view s);

// Length of the longest prefix of `s` that does not end inside a truncated character;
// the rest can still become a character when more bytes arrive.
size_t CompletePrefixLength(std::string_view s);

// Start of the character that ends at `end` (0 < end <= s.size(), s valid UTF-8).
size_t PreviousStart(std::string_view s, size_t end);

// Unicode White_Space, the set Oniguruma's and Rust's `\s` match.
bool IsWhiteSpace(char32_t c);

}  // namespace apr::utf8

#endif  // APRUNTIME_RUNTIME_TOKENIZER_UTF8_H_
