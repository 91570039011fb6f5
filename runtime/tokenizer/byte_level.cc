#include "runtime/tokenizer/byte_level.h"

#include <array>

#include "runtime/tokenizer/utf8.h"

namespace apr::byte_level {
namespace {

// Every mapped character is below U+0144.
constexpr char32_t kMaxChar = 0x144;

struct Tables {
  std::array<std::string, 256> char_of;      // byte -> UTF-8 of its character
  std::array<int16_t, kMaxChar> byte_of;     // code point -> byte, or -1
};

// bytes_to_unicode() of GPT-2's encoder.py: printable Latin-1 bytes stand for
// themselves, the others take U+0100, U+0101, ... in byte order.
Tables MakeTables() {
  Tables t;
  t.byte_of.fill(-1);
  char32_t next = 0x100;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    const char32_t c = printable ? static_cast<char32_t>(b) : next++;
    utf8::AppendCodePoint(c, &t.char_of[b]);
    t.byte_of[c] = static_cast<int16_t>(b);
  }
  return t;
}

const Tables& GetTables() {
  static const Tables* tables = new Tables(MakeTables());
  return *tables;
}

}  // namespace

std::string_view CharOf(uint8_t byte) { return GetTables().char_of[byte]; }

void AppendSpelling(std::string_view bytes, std::string* out) {
  const Tables& t = GetTables();
  out->reserve(out->size() + 2 * bytes.size());
  for (char c : bytes) out->append(t.char_of[static_cast<uint8_t>(c)]);
}

void AppendDecoded(std::string_view token, std::string* out) {
  const Tables& t = GetTables();
  const size_t start = out->size();
  for (size_t i = 0; i < token.size();) {
    const utf8::Sequence seq = utf8::Next(token, i);
    if (!seq.valid || seq.code_point >= kMaxChar || t.byte_of[seq.code_point] < 0) {
      out->resize(start);
      out->append(token);
      return;
    }
    out->push_back(static_cast<char>(t.byte_of[seq.code_point]));
    i += seq.length;
  }
}

}  // namespace apr::byte_level
