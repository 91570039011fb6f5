// The chat-template lexer: text and tags, with Jinja's whitespace control as transformers
// sets it up (trim_blocks: a newline right after %} or #} goes; lstrip_blocks: spaces
// and tabs before {% or {# on their own line go; "-" strips all whitespace on its side).
#include <algorithm>
#include <charconv>

#include "base/status_macros.h"
#include "cluster/openai/chat_template_internal.h"

namespace apr::cluster::openai::chat_template_internal {
namespace {

// Longest first, so that "==" is not read as "=" "=".
constexpr std::string_view kOperators[] = {
    "==", "!=", "<=", ">=", "//", "**", "+", "-", "*", "/", "%", "~", "<",
    ">",  "(",  ")",  "[",  "]",  "{",  "}", ",", ".", ":", "|", "=",
};

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsNameChar(char c) { return IsNameStart(c) || IsDigit(c); }

void AppendUtf8(char32_t code, std::string* out) {
  if (code < 0x80) {
    *out += static_cast<char>(code);
  } else if (code < 0x800) {
    *out += static_cast<char>(0xC0 | (code >> 6));
    *out += static_cast<char>(0x80 | (code & 0x3F));
  } else if (code < 0x10000) {
    *out += static_cast<char>(0xE0 | (code >> 12));
    *out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (code & 0x3F));
  } else {
    *out += static_cast<char>(0xF0 | (code >> 18));
    *out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
    *out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (code & 0x3F));
  }
}

// Jinja normalizes line ends and (keep_trailing_newline off) drops one final newline.
std::string NormalizeSource(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string_view source) : source_(NormalizeSource(source)) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < source_.size(); ++i) {
      if (source_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  absl::StatusOr<std::vector<Token>> Run() {
    while (pos_ < source_.size()) {
      APR_RETURN_IF_ERROR(LexTextAndTag());
    }
    tokens_.push_back({TokenKind::kEnd, "", PositionOf(source_.size())});
    return std::move(tokens_);
  }

 private:
  Position PositionOf(size_t offset) const {
    const auto line = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset) - 1;
    return {static_cast<int>(line - line_starts_.begin()) + 1,
            static_cast<int>(offset - *line) + 1};
  }

  absl::Status ErrorAtOffset(size_t offset, const std::string& message) const {
    return ErrorAt(PositionOf(offset), message);
  }

  bool At(size_t offset, std::string_view text) const {
    return source_.compare(offset, text.size(), text) == 0;
  }

  void SkipWhitespace() {
    while (pos_ < source_.size() && IsSpace(source_[pos_])) ++pos_;
  }

  // The text up to the next tag, then the tag.
  absl::Status LexTextAndTag() {
    size_t tag = pos_;
    while ((tag = source_.find('{', tag)) != std::string::npos) {
      const char next = tag + 1 < source_.size() ? source_[tag + 1] : '\0';
      if (next == '{' || next == '%' || next == '#') break;
      ++tag;
    }
    const bool line_starting = pos_ == 0 || source_[pos_ - 1] == '\n';
    std::string text =
        source_.substr(pos_, tag == std::string::npos ? std::string::npos : tag - pos_);
    if (tag == std::string::npos) {
      EmitText(std::move(text), pos_);
      pos_ = source_.size();
      return absl::OkStatus();
    }
    const char kind = source_[tag + 1];
    const char sign = tag + 2 < source_.size() ? source_[tag + 2] : '\0';
    if (sign == '-') {
      while (!text.empty() && IsSpace(text.back())) text.pop_back();
    } else if (kind != '{' && sign != '+') {
      LstripBlock(line_starting, &text);
    }
    EmitText(std::move(text), pos_);
    pos_ = tag + 2 + (sign == '-' || sign == '+' ? 1 : 0);
    if (kind == '#') return LexComment(tag);
    return LexTag(tag, kind == '%');
  }

  // lstrip_blocks: spaces and tabs between the line start and a block tag go.
  static void LstripBlock(bool line_starting, std::string* text) {
    const size_t line_start = text->rfind('\n') + 1;  // npos + 1 == 0
    if (line_start == 0 && !line_starting) return;
    if (std::all_of(text->begin() + line_start, text->end(), IsSpace)) text->resize(line_start);
  }

  void EmitText(std::string text, size_t offset) {
    if (!text.empty()) tokens_.push_back({TokenKind::kText, std::move(text), PositionOf(offset)});
  }

  absl::Status LexComment(size_t open) {
    const size_t close = source_.find("#}", pos_);
    if (close == std::string::npos) return ErrorAtOffset(open, "unclosed comment '{#'");
    const char sign = close > pos_ ? source_[close - 1] : '\0';
    pos_ = close + 2;
    FinishTag(/*strip_after=*/sign == '-', /*trim_newline=*/sign != '+');
    return absl::OkStatus();
  }

  // After a tag: "-" strips all whitespace; else trim_blocks drops one newline.
  void FinishTag(bool strip_after, bool trim_newline) {
    if (strip_after) {
      SkipWhitespace();
    } else if (trim_newline && pos_ < source_.size() && source_[pos_] == '\n') {
      ++pos_;
    }
  }

  absl::Status LexTag(size_t open, bool statement) {
    tokens_.push_back(
        {statement ? TokenKind::kStmtBegin : TokenKind::kExprBegin, "", PositionOf(open)});
    const std::string_view close = statement ? "%}" : "}}";
    while (true) {
      SkipWhitespace();
      if (pos_ >= source_.size()) {
        return ErrorAtOffset(open, std::string("unclosed tag '") + (statement ? "{%" : "{{") +
                                       "': no '" + std::string(close) + "' follows");
      }
      // "+%}" keeps the newline that trim_blocks would drop; "}}" has no "+" form.
      const bool signed_close =
          (source_[pos_] == '-' || (statement && source_[pos_] == '+')) && At(pos_ + 1, close);
      if (signed_close || At(pos_, close)) {
        tokens_.push_back(
            {statement ? TokenKind::kStmtEnd : TokenKind::kExprEnd, "", PositionOf(pos_)});
        const bool strip_after = signed_close && source_[pos_] == '-';
        const bool keep_newline = signed_close && source_[pos_] == '+';
        pos_ += close.size() + (signed_close ? 1 : 0);
        FinishTag(strip_after, statement && !keep_newline);
        return absl::OkStatus();
      }
      APR_RETURN_IF_ERROR(LexTagToken());
    }
  }

  absl::Status LexTagToken() {
    const size_t start = pos_;
    const char c = source_[pos_];
    if (IsNameStart(c)) {
      while (pos_ < source_.size() && IsNameChar(source_[pos_])) ++pos_;
      tokens_.push_back({TokenKind::kName, source_.substr(start, pos_ - start), PositionOf(start)});
      return absl::OkStatus();
    }
    if (IsDigit(c)) {
      while (pos_ < source_.size() && IsDigit(source_[pos_])) ++pos_;
      if (pos_ + 1 < source_.size() && source_[pos_] == '.' && IsDigit(source_[pos_ + 1])) {
        return ErrorAtOffset(start, "float literals are not supported");
      }
      tokens_.push_back({TokenKind::kInt, source_.substr(start, pos_ - start), PositionOf(start)});
      return absl::OkStatus();
    }
    if (c == '\'' || c == '"') return LexString();
    for (std::string_view op : kOperators) {
      if (At(pos_, op)) {
        pos_ += op.size();
        tokens_.push_back({TokenKind::kOperator, std::string(op), PositionOf(start)});
        return absl::OkStatus();
      }
    }
    const auto byte = static_cast<unsigned char>(c);
    std::string shown = byte >= 0x20 && byte < 0x7F ? std::string(1, c) : "\\x" + Hex(byte);
    return ErrorAtOffset(start, "unexpected character '" + shown + "'");
  }

  static std::string Hex(unsigned value) {
    static constexpr char kDigits[] = "0123456789abcdef";
    return {kDigits[(value >> 4) & 0xF], kDigits[value & 0xF]};
  }

  // A quoted literal with Python's escapes.
  absl::Status LexString() {
    const size_t start = pos_;
    const char quote = source_[pos_++];
    std::string value;
    while (pos_ < source_.size() && source_[pos_] != quote) {
      if (source_[pos_] != '\\') {
        value += source_[pos_++];
        continue;
      }
      APR_RETURN_IF_ERROR(LexEscape(&value));
    }
    if (pos_ >= source_.size()) return ErrorAtOffset(start, "unterminated string literal");
    ++pos_;
    tokens_.push_back({TokenKind::kString, std::move(value), PositionOf(start)});
    return absl::OkStatus();
  }

  absl::Status LexEscape(std::string* value) {
    const size_t start = pos_++;  // the backslash
    if (pos_ >= source_.size()) return ErrorAtOffset(start, "unterminated string literal");
    const char c = source_[pos_++];
    switch (c) {
      case '\n':
        return absl::OkStatus();  // a line continuation
      case '\\':
      case '\'':
      case '"':
        *value += c;
        return absl::OkStatus();
      case 'a':
        *value += '\a';
        return absl::OkStatus();
      case 'b':
        *value += '\b';
        return absl::OkStatus();
      case 'f':
        *value += '\f';
        return absl::OkStatus();
      case 'n':
        *value += '\n';
        return absl::OkStatus();
      case 'r':
        *value += '\r';
        return absl::OkStatus();
      case 't':
        *value += '\t';
        return absl::OkStatus();
      case 'v':
        *value += '\v';
        return absl::OkStatus();
      case 'x':
        return LexHexEscape(start, 2, value);
      case 'u':
        return LexHexEscape(start, 4, value);
      case 'U':
        return LexHexEscape(start, 8, value);
      default:
        break;
    }
    if (c >= '0' && c <= '7') {
      char32_t code = c - '0';
      for (int i = 0;
           i < 2 && pos_ < source_.size() && source_[pos_] >= '0' && source_[pos_] <= '7'; ++i) {
        code = code * 8 + (source_[pos_++] - '0');
      }
      AppendUtf8(code, value);
      return absl::OkStatus();
    }
    if (c == 'N') return ErrorAtOffset(start, "'\\N{...}' escapes are not supported");
    *value += '\\';  // Python keeps unknown escapes as written
    *value += c;
    return absl::OkStatus();
  }

  absl::Status LexHexEscape(size_t start, int digits, std::string* value) {
    char32_t code = 0;
    const char* begin = source_.data() + pos_;
    const char* end = begin + std::min<size_t>(digits, source_.size() - pos_);
    uint32_t parsed = 0;
    auto [ptr, ec] = std::from_chars(begin, end, parsed, 16);
    if (ec != std::errc() || ptr != begin + digits || *begin == '+' || *begin == '-') {
      return ErrorAtOffset(start, "truncated \\x, \\u or \\U escape in a string literal");
    }
    code = parsed;
    if (code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
      return ErrorAtOffset(start, "escape names an invalid code point");
    }
    pos_ += digits;
    AppendUtf8(code, value);
    return absl::OkStatus();
  }

  std::string source_;
  std::vector<size_t> line_starts_;
  size_t pos_ = 0;
  std::vector<Token> tokens_;
};

}  // namespace

absl::StatusOr<std::vector<Token>> Lex(std::string_view source) { return Lexer(source).Run(); }

}  // namespace apr::cluster::openai::chat_template_internal
