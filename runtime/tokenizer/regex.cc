#include "runtime/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "runtime/tokenizer/utf8.h"

namespace apr {
namespace {

// Class bodies (no brackets) that make PCRE2 match what Oniguruma's Unicode classes match
// in Hugging Face tokenizers, measured by tools/onig_unicode/: \s is White_Space, \w is
// Alphabetic | M | Nd | Pc, \h a hex digit. Each is completed by the code points Oniguruma
// knows from newer Unicode data than PCRE2's (onig_unicode.inc).
constexpr std::string_view kSpace =
    R"(\x{9}-\x{D}\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";
constexpr std::string_view kHex = "0-9a-fA-F";

struct Addition {
  std::string_view name;
  std::string_view body;
};
constexpr Addition kAdditions[] = {
#include "runtime/tokenizer/onig_unicode.inc"
};

std::string_view Additions(std::string_view name) {
  for (const Addition& a : kAdditions) {
    if (a.name == name) return a.body;
  }
  return {};
}

std::string Join(std::string_view a, std::string_view b) { return std::string(a) + std::string(b); }

// Body of \s \w \d \h (any case), or empty. Oniguruma's \w differs inside a class.
std::string EscapeBody(char e, bool in_class) {
  switch (e | 0x20) {  // lower case
    case 's': return std::string(kSpace);
    case 'w':
      return Join(R"(\p{Alphabetic}\p{M}\p{Nd}\p{Pc})", Additions(in_class ? "w_in_class" : "w"));
    case 'd': return Join(R"(\p{Nd})", Additions("d"));
    case 'h': return std::string(kHex);
    default: return {};
  }
}

// Body of a POSIX bracket class [:name:], or empty (left to PCRE2).
std::string PosixBody(std::string_view name) {
  if (name == "alpha") return Join(R"(\p{Alphabetic})", Additions("alpha"));
  if (name == "alnum") return Join(R"(\p{Alphabetic}\p{Nd})", Additions("alnum"));
  if (name == "punct") return Join(R"(\p{P}\p{S})", Additions("punct"));
  if (name == "upper") return Join(R"(\p{Uppercase})", Additions("upper"));
  if (name == "lower") return Join(R"(\p{Lowercase})", Additions("lower"));
  if (name == "digit") return EscapeBody('d', true);
  if (name == "word") return EscapeBody('w', true);
  if (name == "space") return EscapeBody('s', true);
  if (name == "blank") return R"(\t\p{Zs})";
  return {};
}

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
  // Appends a class: its body inside a class, [body] or [^body] outside. Negated forms
  // inside a class have no PCRE2 spelling: `verbatim` (PCRE2's meaning) is kept.
  const auto append_class = [&](const std::string& body, bool negated, std::string_view verbatim) {
    if (class_depth > 0) {
      out.append(negated ? std::string(verbatim) : body);
    } else {
      out.append(negated ? "[^" : "[").append(body).append("]");
    }
  };
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[++i];
      if (const std::string body = EscapeBody(e, class_depth > 0); !body.empty()) {
        append_class(body, e >= 'A' && e <= 'Z', p.substr(i - 1, 2));
      } else if ((e == 'b' || e == 'B') && class_depth == 0) {
        // Word boundaries by Oniguruma's word characters.
        const std::string w = "[" + EscapeBody('w', false) + "]";
        out.append(e == 'b' ? "(?:(?<=" + w + ")(?!" + w + ")|(?<!" + w + ")(?=" + w + "))"
                            : "(?:(?<=" + w + ")(?=" + w + ")|(?<!" + w + ")(?!" + w + "))");
      } else if ((e == 'p' || e == 'P') && i + 1 < p.size() && p[i + 1] == '{' &&
                 p.find('}', i) != std::string_view::npos) {
        // \p{Name}, \p{^Name}, \P{Name}: general categories get their additions.
        const size_t close = p.find('}', i);
        std::string_view name = p.substr(i + 2, close - i - 2);
        bool negated = e == 'P';
        if (!name.empty() && name[0] == '^') {
          negated = !negated;
          name.remove_prefix(1);
        }
        const std::string_view verbatim = p.substr(i - 1, close - i + 2);
        const std::string_view added = Additions(name);
        if (added.empty()) {
          out.append(verbatim);  // nothing to add (or not a general category)
        } else {
          append_class("\\p{" + std::string(name) + "}" + std::string(added), negated, verbatim);
        }
        i = close;
      } else {
        out.push_back('\\');
        out.push_back(e);
      }
      continue;
    }
    if (c == '[') {
      if (class_depth > 0 && i + 1 < p.size() && p[i + 1] == ':') {  // [:alpha:]
        const size_t end = p.find(":]", i + 2);
        if (end != std::string_view::npos) {
          const std::string body = PosixBody(p.substr(i + 2, end - i - 2));
          out.append(body.empty() ? p.substr(i, end + 2 - i) : std::string_view(body));
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
  APR_RETURN_IF_ERROR(Compile(translated, PCRE2_UCP | PCRE2_MULTILINE, &code));
  return Regex(std::move(code));
}

absl::StatusOr<Regex> Regex::Literal(std::string_view text) {
  std::shared_ptr<pcre2_code> code;
  APR_RETURN_IF_ERROR(Compile(text, PCRE2_LITERAL, &code));
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
