#include "runtime/tokenizer/normalizer.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>

#include <cstdlib>
#include <string_view>
#include <utility>

#include "runtime/tokenizer/utf8.h"

namespace apr {
namespace {

// Hugging Face tokenizers normalizes with the unicode-normalization-alignments crate,
// whose tables are those of Unicode 9.0 (measured: normalizer_test.cc). A code point
// assigned later is unknown there: no decomposition, combining class 0, no composition,
// so it is a boundary that passes unchanged. ICU knows newer Unicode; the text is
// normalized piecewise between such code points to give the crate's result.
bool NewerThanTokenizersUnicode(char32_t c) {
  if (c < 0x80) return false;  // the common case, cheaply
  UVersionInfo age;
  u_charAge(static_cast<UChar32>(c), age);
  return age[0] > 9;
}

class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(const icu::Normalizer2* n) : normalizer_(n) {}

  void Apply(std::string* text) const override {
    UErrorCode status = U_ZERO_ERROR;
    // Most text is already normalized; skip the copy then.
    if (normalizer_->isNormalizedUTF8(*text, status) && U_SUCCESS(status)) return;
    std::string out;
    size_t done = 0;
    for (size_t i = 0; i < text->size();) {
      const utf8::Sequence seq = utf8::Next(*text, i);
      if (NewerThanTokenizersUnicode(seq.code_point)) {
        AppendNormalized(std::string_view(*text).substr(done, i - done), &out);
        out.append(*text, i, seq.length);
        done = i + seq.length;
      }
      i += seq.length;
    }
    AppendNormalized(std::string_view(*text).substr(done), &out);
    *text = std::move(out);
  }

 private:
  void AppendNormalized(std::string_view piece, std::string* out) const {
    UErrorCode status = U_ZERO_ERROR;
    std::string normalized;
    icu::StringByteSink<std::string> sink(&normalized, static_cast<int32_t>(piece.size()));
    normalizer_->normalizeUTF8(0, icu::StringPiece(piece.data(), piece.size()), sink, nullptr,
                               status);
    // Only an internal ICU failure (out of memory) fails: keep the piece as it was.
    out->append(U_SUCCESS(status) ? std::string_view(normalized) : piece);
  }

  const icu::Normalizer2* normalizer_;  // owned by ICU, lives as long as the process
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  void Apply(std::string* text) const override {
    if (!text->empty()) text->insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::optional<Regex> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}

  void Apply(std::string* text) const override {
    if (!pattern_) return;
    const std::vector<Regex::Match> matches = pattern_->FindAll(*text);
    if (matches.empty()) return;
    std::string out;
    size_t done = 0;
    for (const Regex::Match& m : matches) {
      out.append(*text, done, m.start - done);
      out += content_;
      done = m.end;
    }
    out.append(*text, done, std::string::npos);
    *text = std::move(out);
  }

 private:
  std::optional<Regex> pattern_;
  std::string content_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps)
      : steps_(std::move(steps)) {}
  void Apply(std::string* text) const override {
    for (const auto& step : steps_) step->Apply(text);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

}  // namespace

std::unique_ptr<Normalizer> MakeUnicodeNormalizer(UnicodeForm form) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  switch (form) {
    case UnicodeForm::kNfc: n = icu::Normalizer2::getNFCInstance(status); break;
    case UnicodeForm::kNfd: n = icu::Normalizer2::getNFDInstance(status); break;
    case UnicodeForm::kNfkc: n = icu::Normalizer2::getNFKCInstance(status); break;
    case UnicodeForm::kNfkd: n = icu::Normalizer2::getNFKDInstance(status); break;
  }
  // The data is built into libicudata: failing to load it is an installation defect.
  if (U_FAILURE(status) || n == nullptr) std::abort();
  return std::make_unique<UnicodeNormalizer>(n);
}

std::unique_ptr<Normalizer> MakePrependNormalizer(std::string prefix) {
  return std::make_unique<PrependNormalizer>(std::move(prefix));
}

std::unique_ptr<Normalizer> MakeReplaceNormalizer(std::optional<Regex> pattern,
                                                  std::string content) {
  return std::make_unique<ReplaceNormalizer>(std::move(pattern), std::move(content));
}

std::unique_ptr<Normalizer> MakeSequenceNormalizer(
    std::vector<std::unique_ptr<Normalizer>> steps) {
  return std::make_unique<SequenceNormalizer>(std::move(steps));
}

}  // namespace apr
