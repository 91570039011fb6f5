#include "runtime/tokenizer/utf8.h"

#include <cstdint>

namespace apr::utf8 {
namespace {

bool IsContinuation(uint8_t b) { return (b & 0xC0) == 0x80; }

}  // namespace

Sequence Next(std::string_view s, size_t pos) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(s[pos + i]); };
  const size_t avail = s.size() - pos;
  const uint8_t b0 = byte(0);
  if (b0 < 0x80) return {1, true, false, b0};

  size_t width;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  char32_t cp;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    width = 2;
    cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    width = 3;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
    cp = b0 & 0x0F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    width = 4;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
    cp = b0 & 0x07;
  } else {
    return {1, false, false, 0};
  }
  for (size_t i = 1; i < width; ++i) {
    if (i >= avail) return {i, false, true, 0};
    const uint8_t b = byte(i);
    const bool ok = i == 1 ? (b >= lo && b <= hi) : IsContinuation(b);
    if (!ok) return {i, false, false, 0};
    cp = (cp << 6) | (b & 0x3F);
  }
  return {width, true, false, cp};
}

bool IsValid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    // ASCII runs dominate real text; skip them without the full decode.
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const Sequence seq = Next(s, i);
    if (!seq.valid) return false;
    i += seq.length;
  }
  return true;
}

void AppendCodePoint(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
    return;
  }
  int continuation = c < 0x800 ? 1 : c < 0x10000 ? 2 : 3;
  static constexpr uint8_t kLead[] = {0, 0xC0, 0xE0, 0xF0};
  out->push_back(static_cast<char>(kLead[continuation] | (c >> (6 * continuation))));
  while (continuation-- > 0) {
    out->push_back(static_cast<char>(0x80 | ((c >> (6 * continuation)) & 0x3F)));
  }
}

std::string Repair(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (size_t i = 0; i < s.size();) {
    const Sequence seq = Next(s, i);
    if (seq.valid) {
      out.append(s.substr(i, seq.length));
    } else {
      out.append("\xEF\xBF\xBD");  // U+FFFD
    }
    i += seq.length;
  }
  return out;
}

size_t CompletePrefixLength(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const Sequence seq = Next(s, i);
    if (seq.truncated) return i;
    i += seq.length;
  }
  return i;
}

size_t PreviousStart(std::string_view s, size_t end) {
  size_t start = end - 1;
  while (start > 0 && IsContinuation(static_cast<uint8_t>(s[start]))) --start;
  return start;
}

bool IsWhiteSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

}  // namespace apr::utf8
