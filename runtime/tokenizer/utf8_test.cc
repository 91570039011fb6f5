#include "runtime/tokenizer/utf8.h"

#include "gtest/gtest.h"

namespace apr::utf8 {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";

TEST(Utf8Test, ClassifiesSequences) {
  EXPECT_TRUE(Next("a", 0).valid);
  const Sequence euro = Next("\xE2\x82\xAC", 0);  // U+20AC
  EXPECT_TRUE(euro.valid);
  EXPECT_EQ(euro.length, 3u);
  EXPECT_EQ(euro.code_point, 0x20ACu);
  const Sequence emoji = Next("\xF0\x9F\x98\x80", 0);  // U+1F600
  EXPECT_TRUE(emoji.valid);
  EXPECT_EQ(emoji.code_point, 0x1F600u);

  const Sequence cut = Next("\xF0\x9F\x98", 0);
  EXPECT_FALSE(cut.valid);
  EXPECT_TRUE(cut.truncated);
  EXPECT_EQ(cut.length, 3u);

  EXPECT_FALSE(Next("\xC0\xAF", 0).valid);       // overlong lead byte
  EXPECT_FALSE(Next("\xED\xA0\x80", 0).valid);   // surrogate
  EXPECT_FALSE(Next("\xF4\x90\x80\x80", 0).valid);  // above U+10FFFF
  EXPECT_EQ(Next("\xE2\x28\xA1", 0).length, 1u);  // bad second byte: 1 byte is invalid
  EXPECT_EQ(Next("\xE2\x82\x28", 0).length, 2u);  // bad third byte: 2 bytes are invalid
}

// Expected values are what Python's bytes.decode("utf-8", "replace") returns.
TEST(Utf8Test, RepairReplacesMaximalSubparts) {
  EXPECT_EQ(Repair("plain"), "plain");
  EXPECT_EQ(Repair("a\xFF" "b"), std::string("a") + kReplacement + "b");
  EXPECT_EQ(Repair("\xF0\x9F\x98"), kReplacement);                            // one for a cut char
  EXPECT_EQ(Repair("\xE0\x80"), std::string(kReplacement) + kReplacement);  // E0 80 is never valid
  EXPECT_EQ(Repair("\xE2\x82\x28"), std::string(kReplacement) + "(");
  EXPECT_EQ(Repair("\xED\xA0\x80"), std::string(kReplacement) + kReplacement + kReplacement);
  EXPECT_EQ(Repair("\xC3\xA9\xC3"), std::string("\xC3\xA9") + kReplacement);
}

TEST(Utf8Test, AppendCodePoint) {
  std::string out;
  for (char32_t c : {U'a', U'\u00E9', U'\u20AC', U'\U0001F600'}) AppendCodePoint(c, &out);
  EXPECT_EQ(out, "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
}

TEST(Utf8Test, IsValid) {
  EXPECT_TRUE(IsValid(""));
  EXPECT_TRUE(IsValid("h\xC3\xA9llo \xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsValid("\xF0\x9F\x98"));
  EXPECT_FALSE(IsValid("\x80"));
}

TEST(Utf8Test, CompletePrefixStopsOnlyBeforeACutCharacter) {
  EXPECT_EQ(CompletePrefixLength("abc"), 3u);
  EXPECT_EQ(CompletePrefixLength("ab\xF0\x9F"), 2u);
  EXPECT_EQ(CompletePrefixLength("ab\xF0\x9F\x98\x80"), 6u);
  // Bytes that can never complete are not held back.
  EXPECT_EQ(CompletePrefixLength("ab\xFF"), 3u);
  EXPECT_EQ(CompletePrefixLength("\xE2\x28"), 2u);
}

TEST(Utf8Test, PreviousStartAndWhiteSpace) {
  const std::string s = "a\xC3\xA9\xF0\x9F\x98\x80";
  EXPECT_EQ(PreviousStart(s, s.size()), 3u);
  EXPECT_EQ(PreviousStart(s, 3), 1u);
  EXPECT_EQ(PreviousStart(s, 1), 0u);
  EXPECT_TRUE(IsWhiteSpace(' '));
  EXPECT_TRUE(IsWhiteSpace(0x85));
  EXPECT_TRUE(IsWhiteSpace(0x3000));
  EXPECT_FALSE(IsWhiteSpace(0x180E));  // no longer White_Space since Unicode 6.3
  EXPECT_FALSE(IsWhiteSpace(0x200B));
}

}  // namespace
}  // namespace apr::utf8
