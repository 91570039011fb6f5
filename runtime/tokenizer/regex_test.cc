#include "runtime/tokenizer/regex.h"

#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace apr {
namespace {

std::vector<std::pair<size_t, size_t>> Find(const std::string& pattern, const std::string& text) {
  absl::StatusOr<Regex> regex = Regex::FromOniguruma(pattern);
  EXPECT_TRUE(regex.ok()) << regex.status();
  std::vector<std::pair<size_t, size_t>> out;
  for (const Regex::Match& m : regex->FindAll(text)) out.emplace_back(m.start, m.end);
  return out;
}

using Spans = std::vector<std::pair<size_t, size_t>>;

TEST(RegexTest, TranslatesOnigurumaEscapes) {
  EXPECT_EQ(OnigurumaToPcre2(R"(\h+)"), "[0-9a-fA-F]+");
  EXPECT_EQ(OnigurumaToPcre2(R"([^\h])"), "[^0-9a-fA-F]");
  // Nothing to add to Lt or to scripts; escaped backslashes and [:xdigit:] stay.
  EXPECT_EQ(OnigurumaToPcre2(R"(\p{Lt}\p{Han}\\s[[:xdigit:]])"), R"(\p{Lt}\p{Han}\\s[[:xdigit:]])");
  // A ']' first in a class is a literal: the \s after it is still inside the class.
  EXPECT_EQ(OnigurumaToPcre2(R"([]\s])").substr(0, 8), R"([]\x{9}-)");
}

// Expectations below were measured in Hugging Face tokenizers 0.23.2 (Oniguruma, Unicode 16).
TEST(RegexTest, WordIsOniguruma) {
  // Alphabetic (Ⓐ, Ⅻ), marks and Pc are word characters; No (①) and ZWJ are not.
  EXPECT_EQ(Find(R"(\w+)", "a\u0301\u24B6\u216B\u203F \u2460 \u200D"), (Spans{{0, 12}}));
  // A lone \w takes ², a \w in a class does not.
  EXPECT_EQ(Find(R"(\w)", "\u00B2"), (Spans{{0, 2}}));
  EXPECT_EQ(Find(R"([\w])", "\u00B2"), (Spans{}));
  EXPECT_EQ(Find(R"(\b\w+\b)", "x\u2460y"), (Spans{{0, 1}, {4, 5}}));
  EXPECT_EQ(Find(R"(\h+)", "0fz G"), (Spans{{0, 2}}));
}

TEST(RegexTest, UnicodeNewerThanPcre2) {
  // U+1C89 (Unicode 16) and U+2EBF0 (CJK Extension I, Unicode 15.1) are letters.
  EXPECT_EQ(Find(R"(\p{L}+)", "\u1C89\U0002EBF0"), (Spans{{0, 7}}));
  EXPECT_EQ(Find(R"([^\s\p{L}\p{N}]+)", "\u1C89!"), (Spans{{3, 4}}));
  EXPECT_EQ(Find(R"(\P{L})", "\u1C89"), (Spans{}));
  EXPECT_EQ(Find(R"([[:punct:]]+)", "$\u2103a"), (Spans{{0, 4}}));  // symbols are punct
}

// Oniguruma's \s is White_Space: NBSP and NEL are in, U+180E is not (PCRE2's is).
TEST(RegexTest, SpaceIsUnicodeWhiteSpace) {
  EXPECT_EQ(Find(R"(\s+)", "a\u00A0b\u180E" "c\u0085"), (Spans{{1, 3}, {8, 10}}));
  EXPECT_EQ(Find(R"(\S+)", "a\u180E b"), (Spans{{0, 4}, {5, 6}}));
}

// The Rust onig crate's find_iter: an empty match right after the previous match is
// skipped. Hugging Face splits "axxb x" by x* into a|xx|b| |x.
TEST(RegexTest, EmptyMatchesFollowOnigCrate) {
  EXPECT_EQ(Find("x*", "axxb x"), (Spans{{0, 0}, {1, 3}, {4, 4}, {5, 6}}));
  EXPECT_EQ(Find("", "ab"), (Spans{{0, 0}, {1, 1}, {2, 2}}));
  // The step over an empty match is one character, not one byte.
  EXPECT_EQ(Find("x*", "\u00E9"), (Spans{{0, 0}, {2, 2}}));
}

TEST(RegexTest, AnchorsAreLineAnchors) {
  EXPECT_EQ(Find("^a", "a\na"), (Spans{{0, 1}, {2, 3}}));
}

TEST(RegexTest, LiteralAndErrors) {
  absl::StatusOr<Regex> literal = Regex::Literal("a.b");
  ASSERT_TRUE(literal.ok()) << literal.status();
  EXPECT_EQ(literal->FindAll("axb a.b").size(), 1u);

  absl::StatusOr<Regex> bad = Regex::FromOniguruma("(unclosed");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("(unclosed"), absl::string_view::npos);
}

}  // namespace
}  // namespace apr
