#include "runtime/tokenizer/added_tokens.h"

#include <algorithm>
#include <utility>

#include "runtime/tokenizer/regex.h"
#include "runtime/tokenizer/utf8.h"

namespace apr {
namespace {

// Rust regex's Unicode \w, which Hugging Face uses for `single_word`.
bool IsWordChar(char32_t c) {
  static const Regex* word = new Regex(
      *Regex::FromOniguruma(R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}])"));
  std::string s;
  utf8::AppendCodePoint(c, &s);
  return !word->FindAll(s).empty();
}

}  // namespace

// Byte trie over the contents of one pass.
class AddedTokenMatcher::Trie {
 public:
  explicit Trie(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
    nodes_.emplace_back();
    for (size_t t = 0; t < tokens_.size(); ++t) {
      int32_t node = 0;
      for (char c : tokens_[t].content) node = AddChild(node, static_cast<uint8_t>(c));
      nodes_[node].token = static_cast<int32_t>(t);
    }
  }

  bool empty() const { return tokens_.empty(); }

  // One pass of AddedVocabulary::find_matches over `text`, appended to `out`.
  void Split(std::string_view text, std::vector<Segment>* out) const {
    size_t done = 0;  // end of the last accepted match
    size_t pos = 0;
    while (pos < text.size()) {
      const int32_t index = LongestAt(text, pos);
      if (index < 0) {
        ++pos;
        continue;
      }
      const AddedToken& token = tokens_[index];
      size_t start = pos, stop = pos + token.content.size();
      pos = stop;  // a rejected match is skipped over all the same, as aho-corasick does
      if (token.single_word) {
        const bool word_before =
            start > 0 && IsWordChar(utf8::Next(text, utf8::PreviousStart(text, start)).code_point);
        const bool word_after = stop < text.size() && IsWordChar(utf8::Next(text, stop).code_point);
        if (word_before || word_after) continue;
      }
      if (token.lstrip) {
        size_t s = start;
        while (s > 0) {
          const size_t prev = utf8::PreviousStart(text, s);
          if (!utf8::IsWhiteSpace(utf8::Next(text, prev).code_point)) break;
          s = prev;
        }
        start = std::max(s, done);  // not into the previous match
      }
      if (token.rstrip) {
        while (stop < text.size()) {
          const utf8::Sequence seq = utf8::Next(text, stop);
          if (!utf8::IsWhiteSpace(seq.code_point)) break;
          stop += seq.length;
        }
        pos = stop;
      }
      if (done < start) out->push_back({text.substr(done, start - done), -1});
      out->push_back({text.substr(start, stop - start), token.id});
      done = stop;
    }
    if (done < text.size()) out->push_back({text.substr(done), -1});
  }

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;  // sorted by byte
    int32_t token = -1;
  };

  // Leftmost-longest, as aho-corasick's MatchKind::LeftmostLongest: the caller scans
  // positions left to right, this finds the longest token at one: its index, or -1.
  int32_t LongestAt(std::string_view text, size_t pos) const {
    int32_t node = 0, best = -1;
    for (size_t i = pos; i < text.size(); ++i) {
      node = Child(node, static_cast<uint8_t>(text[i]));
      if (node < 0) break;
      if (nodes_[node].token >= 0) best = nodes_[node].token;
    }
    return best;
  }

  int32_t Child(int32_t node, uint8_t byte) const {
    const auto& children = nodes_[node].children;
    const auto it = std::lower_bound(children.begin(), children.end(), std::make_pair(byte, -1));
    return it != children.end() && it->first == byte ? it->second : -1;
  }

  int32_t AddChild(int32_t node, uint8_t byte) {
    if (const int32_t child = Child(node, byte); child >= 0) return child;
    const int32_t child = static_cast<int32_t>(nodes_.size());
    auto& children = nodes_[node].children;
    children.insert(std::lower_bound(children.begin(), children.end(), std::make_pair(byte, -1)),
                    {byte, child});
    nodes_.emplace_back();
    return child;
  }

  std::vector<AddedToken> tokens_;
  std::vector<Node> nodes_;
};

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedToken>& tokens) {
  std::vector<AddedToken> pass[2];
  for (const AddedToken& t : tokens) {
    if (!t.content.empty()) pass[t.normalized ? 1 : 0].push_back(t);
  }
  for (auto& p : pass) passes_.emplace_back(std::move(p));
}

AddedTokenMatcher::~AddedTokenMatcher() = default;
AddedTokenMatcher::AddedTokenMatcher(AddedTokenMatcher&&) noexcept = default;
AddedTokenMatcher& AddedTokenMatcher::operator=(AddedTokenMatcher&&) noexcept = default;

std::vector<Segment> AddedTokenMatcher::SplitPass(std::string_view text, bool normalized) const {
  std::vector<Segment> segments;
  const Trie& trie = passes_[normalized ? 1 : 0];
  if (trie.empty()) {
    if (!text.empty()) segments.push_back({text, -1});
  } else {
    trie.Split(text, &segments);
  }
  return segments;
}

std::vector<Segment> AddedTokenMatcher::Split(std::string_view text) const {
  std::vector<Segment> segments;
  if (text.empty()) return segments;
  segments.push_back({text, -1});
  for (const Trie& trie : passes_) {
    if (trie.empty()) continue;
    std::vector<Segment> next;
    for (const Segment& s : segments) {
      if (s.id >= 0) {
        next.push_back(s);
      } else {
        trie.Split(s.text, &next);
      }
    }
    segments = std::move(next);
  }
  return segments;
}

}  // namespace apr
