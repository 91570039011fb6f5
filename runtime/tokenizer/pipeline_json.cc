#include "runtime/tokenizer/pipeline_json.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/tokenizer/utf8.h"

namespace apr {
namespace {

using Json = nlohmann::json;

std::string TypeOf(const Json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string()
             ? j["type"].get<std::string>()
             : j.dump();
}

absl::Status Unsupported(absl::string_view part, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("unsupported ", part, ": ", what));
}

// The one character of a Rust `char` field.
absl::StatusOr<char32_t> OneChar(const Json& j, absl::string_view what) {
  const std::string s = j.get<std::string>();
  if (s.empty() || utf8::Next(s, 0).length != s.size()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " must be one character, not ", j.dump()));
  }
  return utf8::Next(s, 0).code_point;
}

// Replace's pattern: {"String": ...} (literal; an empty one matches at every character
// boundary, as in tokenizers) or {"Regex": ...}.
absl::StatusOr<std::optional<Regex>> ParsePattern(const Json& pattern, absl::string_view part) {
  if (pattern.contains("String")) {
    absl::StatusOr<Regex> r = Regex::Literal(pattern["String"].get<std::string>());
    if (!r.ok()) return r.status();
    return std::optional<Regex>(*std::move(r));
  }
  if (pattern.contains("Regex")) {
    absl::StatusOr<Regex> r = Regex::FromOniguruma(pattern["Regex"].get<std::string>());
    if (!r.ok()) return r.status();
    return std::optional<Regex>(*std::move(r));
  }
  return Unsupported(absl::StrCat(part, " pattern"), pattern.dump());
}

absl::StatusOr<std::unique_ptr<Normalizer>> ParseUnicodeForm(const std::string& type) {
  if (type == "NFC") return MakeUnicodeNormalizer(UnicodeForm::kNfc);
  if (type == "NFD") return MakeUnicodeNormalizer(UnicodeForm::kNfd);
  if (type == "NFKC") return MakeUnicodeNormalizer(UnicodeForm::kNfkc);
  if (type == "NFKD") return MakeUnicodeNormalizer(UnicodeForm::kNfkd);
  return Unsupported("normalizer", type);
}

absl::StatusOr<std::unique_ptr<Decoder>> ParseStripDecoder(const Json& j) {
  absl::StatusOr<char32_t> content = OneChar(j.at("content"), "Strip decoder content");
  if (!content.ok()) return content.status();
  return MakeStripDecoder(*content, j.at("start").get<size_t>(), j.at("stop").get<size_t>());
}

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const Json& j) {
  const std::string type = TypeOf(j);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (const Json& step : j.at("normalizers")) {
      absl::StatusOr<std::unique_ptr<Normalizer>> n = ParseNormalizer(step);
      if (!n.ok()) return n.status();
      steps.push_back(*std::move(n));
    }
    return MakeSequenceNormalizer(std::move(steps));
  }
  if (type == "Prepend") return MakePrependNormalizer(j.at("prepend").get<std::string>());
  if (type == "Replace") {
    absl::StatusOr<std::optional<Regex>> pattern = ParsePattern(j.at("pattern"), "Replace");
    if (!pattern.ok()) return pattern.status();
    return MakeReplaceNormalizer(*std::move(pattern), j.at("content").get<std::string>());
  }
  return ParseUnicodeForm(type);
}

absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(const Json& j) {
  const std::string type = TypeOf(j);
  if (type == "ByteLevel") return MakeByteLevelDecoder();
  if (type == "ByteFallback") return MakeByteFallbackDecoder();
  if (type == "Fuse") return MakeFuseDecoder();
  if (type == "Strip") return ParseStripDecoder(j);
  if (type == "Replace") {
    absl::StatusOr<std::optional<Regex>> pattern = ParsePattern(j.at("pattern"), "Replace");
    if (!pattern.ok()) return pattern.status();
    return MakeReplaceDecoder(*std::move(pattern), j.at("content").get<std::string>());
  }
  if (type == "Metaspace") {
    absl::StatusOr<MetaspaceOptions> m = ParseMetaspace(j);
    if (!m.ok()) return m.status();
    return MakeMetaspaceDecoder(m->replacement, m->prepend == PrependScheme::kNever);
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Decoder>> steps;
    for (const Json& step : j.at("decoders")) {
      absl::StatusOr<std::unique_ptr<Decoder>> d = ParseDecoder(step);
      if (!d.ok()) return d.status();
      steps.push_back(*std::move(d));
    }
    return MakeSequenceDecoder(std::move(steps));
  }
  return Unsupported("decoder", type);
}

absl::StatusOr<MetaspaceOptions> ParseMetaspace(const Json& j) {
  MetaspaceOptions options;
  absl::StatusOr<char32_t> c = OneChar(j.at("replacement"), "Metaspace replacement");
  if (!c.ok()) return c.status();
  utf8::AppendCodePoint(*c, &options.replacement);
  std::optional<PrependScheme> scheme;
  if (j.contains("prepend_scheme") && !j["prepend_scheme"].is_null()) {
    const std::string s = j["prepend_scheme"].get<std::string>();
    if (s == "always") scheme = PrependScheme::kAlways;
    else if (s == "first") scheme = PrependScheme::kFirst;
    else if (s == "never") scheme = PrependScheme::kNever;
    else return Unsupported("Metaspace prepend_scheme", s);
  }
  if (j.contains("add_prefix_space") && j["add_prefix_space"] == false) {
    if (scheme && *scheme != PrependScheme::kNever) {
      return absl::InvalidArgumentError(
          "Metaspace: add_prefix_space false does not match prepend_scheme");
    }
    scheme = PrependScheme::kNever;
  }
  options.prepend = scheme.value_or(PrependScheme::kAlways);
  if (j.contains("split") && !j["split"].is_null()) options.split = j["split"].get<bool>();
  return options;
}

}  // namespace apr
