#include "runtime/tokenizer/byte_level.h"

#include <set>
#include <string>

#include "gtest/gtest.h"

namespace apr::byte_level {
namespace {

TEST(ByteLevelTest, KnownCharacters) {
  EXPECT_EQ(CharOf('A'), "A");
  EXPECT_EQ(CharOf('!'), "!");
  EXPECT_EQ(CharOf(0xE9), "\xC3\xA9");  // printable Latin-1 stands for itself: é
  EXPECT_EQ(CharOf(0x00), "\xC4\x80");  // U+0100 Ā: first unprintable byte
  EXPECT_EQ(CharOf(' '), "\xC4\xA0");   // U+0120 Ġ
  EXPECT_EQ(CharOf('\n'), "\xC4\x8A");  // U+010A Ċ
  EXPECT_EQ(CharOf(0x7F), "\xC4\xA1");  // U+0121 ġ
  EXPECT_EQ(CharOf(0xAD), "\xC5\x83");  // U+0143 Ń: the last one
}

TEST(ByteLevelTest, IsABijection) {
  std::set<std::string> seen;
  for (int b = 0; b < 256; ++b) seen.insert(std::string(CharOf(static_cast<uint8_t>(b))));
  EXPECT_EQ(seen.size(), 256u);

  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  std::string spelled, decoded;
  AppendSpelling(all, &spelled);
  AppendDecoded(spelled, &decoded);
  EXPECT_EQ(decoded, all);
}

TEST(ByteLevelTest, SpellsBytes) {
  std::string out;
  AppendSpelling("Hi there\n", &out);
  EXPECT_EQ(out, "Hi\xC4\xA0there\xC4\x8A");
}

TEST(ByteLevelTest, TokenOutsideTheAlphabetDecodesAsItself) {
  std::string out = "x";
  AppendDecoded("\xC4\xA0" "a b", &out);  // "Ġa b": the plain space is not in the alphabet
  EXPECT_EQ(out, "x\xC4\xA0" "a b");
  out.clear();
  AppendDecoded("<|eot_id|>", &out);  // printable ASCII maps to itself either way
  EXPECT_EQ(out, "<|eot_id|>");
}

}  // namespace
}  // namespace apr::byte_level
