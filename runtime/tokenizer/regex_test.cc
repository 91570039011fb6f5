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

TEST(RegexTest, TranslatesOnigurumaClasses) {
  EXPECT_EQ(OnigurumaToPcre2(R"(\h)"), "[0-9a-fA-F]");
  EXPECT_EQ(OnigurumaToPcre2(R"(\W)"), R"([^\p{L}\p{M}\p{N}\p{Pc}])");
  EXPECT_EQ(OnigurumaToPcre2(R"([^\s\p{L}])"),
            R"([^\x{9}-\x{D}\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029})"
            R"(\x{202F}\x{205F}\x{3000}\p{L}])");
  EXPECT_EQ(OnigurumaToPcre2(R"(\\s[]\s])"), R"(\\s[]\x{9}-\x{D}\x{20}\x{85}\x{A0}\x{1680})"
                                             R"(\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F})"
                                             R"(\x{205F}\x{3000}])");
  EXPECT_EQ(OnigurumaToPcre2(R"([[:alpha:]\d]\p{N})"), R"([[:alpha:]\d]\p{N})");
}

// Oniguruma's \s is White_Space: NBSP and NEL are in, U+180E is not (PCRE2's is).
TEST(RegexTest, SpaceIsUnicodeWhiteSpace) {
  EXPECT_EQ(Find(R"(\s+)", "a\u00A0b\u180E" "c\u0085"), (Spans{{1, 3}, {8, 10}}));
  EXPECT_EQ(Find(R"(\S+)", "a\u180E b"), (Spans{{0, 4}, {5, 6}}));
}

TEST(RegexTest, WordAndHexClassesAreOniguruma) {
  // \w takes combining marks and all numbers; \h is a hex digit.
  EXPECT_EQ(Find(R"(\w+)", "a\u0301b \u00B2 -"), (Spans{{0, 4}, {5, 7}}));
  EXPECT_EQ(Find(R"(\h+)", "0fz G"), (Spans{{0, 2}}));
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
