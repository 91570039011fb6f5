// Expectations follow Hugging Face's AddedVocabulary::find_matches (and agree with it).
#include "runtime/tokenizer/added_tokens.h"

#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace apr {
namespace {

using Split = std::vector<std::pair<std::string, int32_t>>;

AddedToken Token(int32_t id, std::string content, bool normalized = false) {
  AddedToken t;
  t.id = id;
  t.content = std::move(content);
  t.normalized = normalized;
  t.special = true;
  return t;
}

Split SplitText(const std::vector<AddedToken>& tokens, std::string_view text) {
  Split out;
  for (const Segment& s : AddedTokenMatcher(tokens).Split(text)) {
    out.emplace_back(std::string(s.text), s.id);
  }
  return out;
}

TEST(AddedTokensTest, LeftmostLongest) {
  const std::vector<AddedToken> tokens = {Token(1, "ab"), Token(2, "abc"), Token(3, "bcd")};
  EXPECT_EQ(SplitText(tokens, "abcd"), (Split{{"abc", 2}, {"d", -1}}));
  EXPECT_EQ(SplitText(tokens, "xabxbcd"), (Split{{"x", -1}, {"ab", 1}, {"x", -1}, {"bcd", 3}}));
  EXPECT_EQ(SplitText(tokens, "<|a|>"), (Split{{"<|a|>", -1}}));
  EXPECT_EQ(SplitText(tokens, ""), (Split{}));
}

TEST(AddedTokensTest, SpecialTokensInsideText) {
  const std::vector<AddedToken> tokens = {Token(10, "<|begin_of_text|>"),
                                          Token(11, "<|end_of_text|>")};
  EXPECT_EQ(SplitText(tokens, "<|begin_of_text|>hi<|end_of_text|>"),
            (Split{{"<|begin_of_text|>", 10}, {"hi", -1}, {"<|end_of_text|>", 11}}));
  EXPECT_EQ(SplitText(tokens, "<<|end_of_text|>|end_of_text|>"),
            (Split{{"<", -1}, {"<|end_of_text|>", 11}, {"|end_of_text|>", -1}}));
}

TEST(AddedTokensTest, NonNormalizedTokensAreMatchedFirst) {
  // "bc" (normalized = false) wins over the longer, normalized "abcd".
  const std::vector<AddedToken> tokens = {Token(1, "abcd", true), Token(2, "bc", false)};
  EXPECT_EQ(SplitText(tokens, "abcd abcd"), (Split{{"a", -1}, {"bc", 2}, {"d a", -1}, {"bc", 2},
                                             {"d", -1}}));
  EXPECT_EQ(SplitText(tokens, "xabcdx"), (Split{{"xa", -1}, {"bc", 2}, {"dx", -1}}));
}

TEST(AddedTokensTest, StripSwallowsWhiteSpace) {
  AddedToken mask = Token(5, "<m>");
  mask.lstrip = mask.rstrip = true;
  EXPECT_EQ(SplitText({mask}, "a \t<m>\u3000 b"), (Split{{"a", -1}, {" \t<m>\u3000 ", 5}, {"b", -1}}));
  // lstrip stops at the end of the previous match.
  EXPECT_EQ(SplitText({mask}, "<m> <m>"), (Split{{"<m> ", 5}, {"<m>", 5}}));
}

TEST(AddedTokensTest, SingleWordNeedsNonWordNeighbours) {
  AddedToken mask = Token(5, "<m>");
  mask.single_word = true;
  EXPECT_EQ(SplitText({mask}, "<m> a<m> <m>b <m>, é<m>"),
            (Split{{"<m>", 5}, {" a<m> <m>b ", -1}, {"<m>", 5}, {", é<m>", -1}}));
}

}  // namespace
}  // namespace apr
