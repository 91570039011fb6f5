#include "runtime/tokenizer/decoder.h"

#include <utility>

#include "absl/strings/str_replace.h"
#include "runtime/tokenizer/byte_level.h"
#include "runtime/tokenizer/utf8.h"

namespace apr {
namespace {

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

class ByteLevelDecoder : public Decoder {
 public:
  void Apply(std::vector<std::string>* tokens, bool raw) const override {
    std::string bytes;
    for (const std::string& token : *tokens) byte_level::AppendDecoded(token, &bytes);
    tokens->assign(1, raw ? std::move(bytes) : utf8::Repair(bytes));
  }
};

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The byte of "<0xNN>", or -1. Rust's u8::from_str_radix also takes a '+' sign, so
// "<0x+F>" is byte 15 there too.
int FallbackByte(const std::string& token) {
  if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return -1;
  if (token[3] == '+') return HexDigit(token[4]);
  const int high = HexDigit(token[3]), low = HexDigit(token[4]);
  return high < 0 || low < 0 ? -1 : high * 16 + low;
}

class ByteFallbackDecoder : public Decoder {
 public:
  void Apply(std::vector<std::string>* tokens, bool raw) const override {
    std::vector<std::string> out;
    std::string run;
    const auto flush = [&] {
      if (run.empty()) return;
      if (raw || utf8::IsValid(run)) {
        out.push_back(std::move(run));
      } else {
        for (size_t i = 0; i < run.size(); ++i) out.emplace_back(kReplacementChar);
      }
      run.clear();
    };
    for (std::string& token : *tokens) {
      if (const int byte = FallbackByte(token); byte >= 0) {
        run.push_back(static_cast<char>(byte));
        continue;
      }
      flush();
      out.push_back(std::move(token));
    }
    flush();
    *tokens = std::move(out);
  }
};

class FuseDecoder : public Decoder {
 public:
  void Apply(std::vector<std::string>* tokens, bool) const override {
    std::string all;
    for (const std::string& token : *tokens) all += token;
    tokens->assign(1, std::move(all));
  }
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop)
      : start_(start), stop_(stop) {
    utf8::AppendCodePoint(content, &content_);
  }

  void Apply(std::vector<std::string>* tokens, bool) const override {
    for (std::string& token : *tokens) {
      size_t begin = 0, end = token.size();
      for (size_t i = 0; i < start_ && token.compare(begin, content_.size(), content_) == 0 &&
                         begin < end;
           ++i) {
        begin += content_.size();
      }
      for (size_t i = 0; i < stop_ && end >= begin + content_.size() &&
                         token.compare(end - content_.size(), content_.size(), content_) == 0;
           ++i) {
        end -= content_.size();
      }
      token = token.substr(begin, end - begin);
    }
  }

 private:
  std::string content_;
  size_t start_;
  size_t stop_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(std::optional<Regex> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}

  void Apply(std::vector<std::string>* tokens, bool) const override {
    if (!pattern_) return;
    for (std::string& token : *tokens) {
      // Only raw decoding can hand over bytes that are not UTF-8; the regex needs UTF-8.
      if (!utf8::IsValid(token)) continue;
      std::string out;
      size_t done = 0;
      for (const Regex::Match& m : pattern_->FindAll(token)) {
        out.append(token, done, m.start - done);
        out += content_;
        done = m.end;
      }
      out.append(token, done, std::string::npos);
      token = std::move(out);
    }
  }

 private:
  std::optional<Regex> pattern_;
  std::string content_;
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool never)
      : replacement_(std::move(replacement)), never_(never) {}

  void Apply(std::vector<std::string>* tokens, bool) const override {
    for (size_t i = 0; i < tokens->size(); ++i) {
      std::string& token = (*tokens)[i];
      token = absl::StrReplaceAll(token, {{replacement_, i == 0 && !never_ ? "" : " "}});
    }
  }

 private:
  std::string replacement_;
  bool never_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps)
      : steps_(std::move(steps)) {}
  void Apply(std::vector<std::string>* tokens, bool raw) const override {
    for (const auto& step : steps_) step->Apply(tokens, raw);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

}  // namespace

std::unique_ptr<Decoder> MakeByteLevelDecoder() { return std::make_unique<ByteLevelDecoder>(); }
std::unique_ptr<Decoder> MakeByteFallbackDecoder() {
  return std::make_unique<ByteFallbackDecoder>();
}
std::unique_ptr<Decoder> MakeFuseDecoder() { return std::make_unique<FuseDecoder>(); }
std::unique_ptr<Decoder> MakeStripDecoder(char32_t content, size_t start, size_t stop) {
  return std::make_unique<StripDecoder>(content, start, stop);
}
std::unique_ptr<Decoder> MakeReplaceDecoder(std::optional<Regex> pattern, std::string content) {
  return std::make_unique<ReplaceDecoder>(std::move(pattern), std::move(content));
}
std::unique_ptr<Decoder> MakeMetaspaceDecoder(std::string replacement, bool never) {
  return std::make_unique<MetaspaceDecoder>(std::move(replacement), never);
}
std::unique_ptr<Decoder> MakeSequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps) {
  return std::make_unique<SequenceDecoder>(std::move(steps));
}

}  // namespace apr
