#include "runtime/tokenizer/pre_tokenizer.h"

#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "runtime/tokenizer/byte_level.h"

namespace apr {
namespace {

struct Span {
  size_t start;
  size_t end;
  bool flag;  // is a match (before the behavior is applied), or is removed (after)
};

// The cut of Hugging Face's NormalizedString::split: the whole of `text` as alternating
// match / non-match spans, then grouped by `behavior`.
std::vector<Span> SplitSpans(const Regex& regex, std::string_view text, SplitBehavior behavior,
                             bool invert) {
  std::vector<Span> spans;
  size_t prev = 0;
  for (const Regex::Match& m : regex.FindAll(text)) {
    if (prev != m.start) spans.push_back({prev, m.start, invert});
    spans.push_back({m.start, m.end, !invert});
    prev = m.end;
  }
  if (prev != text.size()) spans.push_back({prev, text.size(), invert});

  std::vector<Span> out;
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      return spans;
    case SplitBehavior::kIsolated:
      for (Span& s : spans) s.flag = false;
      return spans;
    case SplitBehavior::kContiguous:
      for (const Span& s : spans) {
        if (s.flag == previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back({s.start, s.end, false});
        }
        previous_match = s.flag;
      }
      return out;
    case SplitBehavior::kMergedWithPrevious:
      for (const Span& s : spans) {
        if (s.flag && !previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back({s.start, s.end, false});
        }
        previous_match = s.flag;
      }
      return out;
    case SplitBehavior::kMergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->flag && !previous_match && !out.empty()) {
          out.back().start = it->start;
        } else {
          out.push_back({it->start, it->end, false});
        }
        previous_match = it->flag;
      }
      return {out.rbegin(), out.rend()};
  }
  return out;
}

// Appends the kept spans of `piece`; only one starting where `piece` starts can be at
// the origin of the input.
void AppendPieces(const Regex& regex, const PreToken& piece, SplitBehavior behavior, bool invert,
                  std::vector<PreToken>* out) {
  const std::string_view text = piece.text;
  for (const Span& s : SplitSpans(regex, text, behavior, invert)) {
    if (!s.flag && s.end > s.start) {
      out->push_back({std::string(text.substr(s.start, s.end - s.start)),
                      piece.at_origin && s.start == 0});
    }
  }
}

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::optional<Regex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}

  void ApplyTo(std::vector<PreToken>* pieces) const override {
    std::vector<PreToken> split;
    for (PreToken& piece : *pieces) {
      if (add_prefix_space_ && piece.text[0] != ' ') piece.text.insert(0, 1, ' ');
      if (regex_) {
        AppendPieces(*regex_, piece, SplitBehavior::kIsolated, false, &split);
      } else {
        split.push_back(std::move(piece));
      }
    }
    pieces->clear();
    for (const PreToken& piece : split) {
      PreToken& spelled = pieces->emplace_back();
      spelled.at_origin = piece.at_origin;
      byte_level::AppendSpelling(piece.text, &spelled.text);
    }
  }

 private:
  bool add_prefix_space_;
  std::optional<Regex> regex_;
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(Regex regex, SplitBehavior behavior, bool invert)
      : regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}

  void ApplyTo(std::vector<PreToken>* pieces) const override {
    std::vector<PreToken> split;
    for (const PreToken& piece : *pieces) {
      AppendPieces(regex_, piece, behavior_, invert_, &split);
    }
    *pieces = std::move(split);
  }

 private:
  Regex regex_;
  SplitBehavior behavior_;
  bool invert_;
};

// Hugging Face's Metaspace::pre_tokenize.
class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme prepend, bool split)
      : replacement_(std::move(replacement)), prepend_(prepend) {
    // A literal pattern always compiles.
    if (split) split_ = *Regex::Literal(replacement_);
  }

  void ApplyTo(std::vector<PreToken>* pieces) const override {
    std::vector<PreToken> out;
    for (PreToken& piece : *pieces) {
      piece.text = absl::StrReplaceAll(piece.text, {{" ", replacement_}});
      const bool starts = absl::StartsWith(piece.text, replacement_);
      if (!starts && (prepend_ == PrependScheme::kAlways ||
                      (prepend_ == PrependScheme::kFirst && piece.at_origin))) {
        piece.text.insert(0, replacement_);
      }
      if (split_) {
        AppendPieces(*split_, piece, SplitBehavior::kMergedWithNext, false, &out);
      } else {
        out.push_back(std::move(piece));
      }
    }
    *pieces = std::move(out);
  }

 private:
  std::string replacement_;
  PrependScheme prepend_;
  std::optional<Regex> split_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}

  void ApplyTo(std::vector<PreToken>* pieces) const override {
    for (const auto& step : steps_) step->ApplyTo(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

}  // namespace

void PreTokenizer::Apply(std::vector<std::string>* pieces) const {
  std::vector<PreToken> tokens;
  for (std::string& piece : *pieces) tokens.push_back({std::move(piece), tokens.empty()});
  ApplyTo(&tokens);
  pieces->clear();
  for (PreToken& token : tokens) pieces->push_back(std::move(token.text));
}

std::unique_ptr<PreTokenizer> MakeByteLevelPreTokenizer(bool add_prefix_space, bool use_regex) {
  std::optional<Regex> regex;
  if (use_regex) {
    // A fixed, known-good pattern: failing to compile it is a build defect.
    regex = *Regex::FromOniguruma(kGpt2Pattern);
  }
  return std::make_unique<ByteLevelPreTokenizer>(add_prefix_space, std::move(regex));
}

std::unique_ptr<PreTokenizer> MakeSplitPreTokenizer(Regex pattern, SplitBehavior behavior,
                                                    bool invert) {
  return std::make_unique<SplitPreTokenizer>(std::move(pattern), behavior, invert);
}

std::unique_ptr<PreTokenizer> MakeMetaspacePreTokenizer(std::string replacement,
                                                        PrependScheme prepend, bool split) {
  return std::make_unique<MetaspacePreTokenizer>(std::move(replacement), prepend, split);
}

std::unique_ptr<PreTokenizer> MakeSequencePreTokenizer(
    std::vector<std::unique_ptr<PreTokenizer>> steps) {
  return std::make_unique<SequencePreTokenizer>(std::move(steps));
}

}  // namespace apr
