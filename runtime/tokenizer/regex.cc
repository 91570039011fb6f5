#include "runtime/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "absl/strings/str_cat.h"
#include "runtime/tokenizer/utf8.h"

namespace apr {
namespace {

// Class bodies (without brackets) of Oniguruma's Unicode \s, \w and \h.
constexpr std::string_view kSpace =
    R"(\x{9}-\x{D}\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";
constexpr std::string_view kWord = R"(\p{L}\p{M}\p{N}\p{Pc})";
constexpr std::string_view kHex = "0-9a-fA-F";

absl::Status Compile(std::string_view pattern, uint32_t options,
                     std::shared_ptr<pcre2_code>* out) {
  pcre2_compile_context* context = pcre2_compile_context_create(nullptr);
  // Oniguruma's line anchors know only '\n'.
  pcre2_set_newline(context, PCRE2_NEWLINE_LF);
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | options, &error, &offset, context);
  pcre2_compile_context_free(context);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    return absl::InvalidArgumentError(absl::StrCat("bad regex /", std::string(pattern), "/ at offset ", offset,
                                                   ": ", reinterpret_cast<char*>(message)));
  }
  // JIT is an optimisation only: without it pcre2_match interprets.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  out->reset(code, pcre2_code_free);
  return absl::OkStatus();
}

}  // namespace

std::string OnigurumaToPcre2(std::string_view p) {
  std::string out;
  out.reserve(p.size() * 2);
  int class_depth = 0;  // Oniguruma allows nested classes
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[++i];
      const bool in_class = class_depth > 0;
      std::string_view body;
      switch (e) {
        case 's': case 'S': body = kSpace; break;
        case 'w': case 'W': body = kWord; break;
        case 'h': case 'H': body = kHex; break;
        default: break;
      }
      const bool negated = e == 'S' || e == 'W' || e == 'H';
      if (body.empty() || (in_class && negated)) {
        out.push_back('\\');
        out.push_back(e);
      } else if (in_class) {
        out.append(body);
      } else {
        out.append(negated ? "[^" : "[").append(body).append("]");
      }
      continue;
    }
    if (c == '[') {
      if (class_depth > 0 && i + 1 < p.size() && p[i + 1] == ':') {  // [:alpha:]
        const size_t end = p.find(":]", i + 2);
        if (end != std::string_view::npos) {
          out.append(p.substr(i, end + 2 - i));
          i = end + 1;
          continue;
        }
      }
      ++class_depth;
      out.push_back('[');
      // A ']' first in a class is a literal.
      if (i + 1 < p.size() && p[i + 1] == '^') out.push_back(p[++i]);
      if (i + 1 < p.size() && p[i + 1] == ']') out.push_back(p[++i]);
      continue;
    }
    if (c == ']' && class_depth > 0) --class_depth;
    out.push_back(c);
  }
  return out;
}

absl::StatusOr<Regex> Regex::FromOniguruma(std::string_view pattern) {
  std::shared_ptr<pcre2_code> code;
  const std::string translated = OnigurumaToPcre2(pattern);
  // Oniguruma's Ruby syntax makes ^ and $ line anchors: PCRE2_MULTILINE.
  if (absl::Status status = Compile(translated, PCRE2_UCP | PCRE2_MULTILINE, &code);
      !status.ok()) {
    return status;
  }
  return Regex(std::move(code));
}

absl::StatusOr<Regex> Regex::Literal(std::string_view text) {
  std::shared_ptr<pcre2_code> code;
  if (absl::Status status = Compile(text, PCRE2_LITERAL, &code); !status.ok()) return status;
  return Regex(std::move(code));
}

std::vector<Regex::Match> Regex::FindAll(std::string_view text) const {
  std::vector<Match> matches;
  pcre2_match_data* data = pcre2_match_data_create_from_pattern(code_.get(), nullptr);
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t search_from = 0;
  bool have_last = false;
  size_t last_end = 0;
  // The first call checks the UTF-8 of the whole subject; later calls need not.
  uint32_t options = 0;
  while (search_from <= text.size()) {
    int rc = pcre2_match(code_.get(), subject, text.size(), search_from, options, data, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      rc = pcre2_match(code_.get(), subject, text.size(), search_from, options | PCRE2_NO_JIT,
                       data, nullptr);
    }
    // No match, or an error (invalid UTF-8, match limit): no further matches.
    if (rc < 0) break;
    options = PCRE2_NO_UTF_CHECK;
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
    const size_t start = ovector[0], end = ovector[1];
    if (start == end && have_last && search_from == last_end) {
      search_from += search_from < text.size() ? utf8::Next(text, search_from).length : 1;
      continue;
    }
    search_from = end;
    last_end = end;
    have_last = true;
    matches.push_back({start, end});
  }
  pcre2_match_data_free(data);
  return matches;
}

}  // namespace apr
