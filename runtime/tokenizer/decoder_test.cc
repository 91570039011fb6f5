// Hand-computed decoder cases; each agrees with the Node binding of tokenizers 0.23.2
// (decoders' decode(tokens)).
#include "runtime/tokenizer/decoder.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace apr {
namespace {

using Tokens = std::vector<std::string>;

Tokens DecodeChain(const Decoder& d, Tokens tokens, bool raw = false) {
  d.Apply(&tokens, raw);
  return tokens;
}

TEST(DecoderTest, ByteFallback) {
  const auto d = MakeByteFallbackDecoder();
  // E2 82 is no UTF-8: one U+FFFD per byte; E2 82 AC is €; "<0x+F>" is byte 15 in
  // Rust's from_str_radix; "<0xzz>" is no byte token.
  EXPECT_EQ(DecodeChain(*d, {"<0xE2>", "<0x82>", "a", "<0xE2>", "<0x82>", "<0xAC>", "<0x+F>", "<0xzz>"}),
            (Tokens{"\uFFFD", "\uFFFD", "a", "\u20ac\x0f", "<0xzz>"}));
  EXPECT_EQ(DecodeChain(*d, {"<0xE2>", "<0x82>"}, /*raw=*/true), (Tokens{"\xE2\x82"}));
}

TEST(DecoderTest, StripFuseReplace) {
  EXPECT_EQ(DecodeChain(*MakeStripDecoder(U' ', 1, 0), {" ", "  a "}), (Tokens{"", " a "}));
  EXPECT_EQ(DecodeChain(*MakeStripDecoder(U'x', 2, 1), {"xxxaxx"}), (Tokens{"xax"}));
  // Where the two cuts overlap tokenizers panics (slice 1..0); here the token empties.
  EXPECT_EQ(DecodeChain(*MakeStripDecoder(U'x', 1, 1), {"x"}), (Tokens{""}));
  EXPECT_EQ(DecodeChain(*MakeFuseDecoder(), {"a", "", "b"}), (Tokens{"ab"}));
  EXPECT_EQ(DecodeChain(*MakeReplaceDecoder(*Regex::Literal("\u2581"), " "), {"\u2581a\u2581", "b"}),
            (Tokens{" a ", "b"}));
}

TEST(DecoderTest, Metaspace) {
  // The first token loses every ▁ unless the prepend scheme is "never".
  EXPECT_EQ(DecodeChain(*MakeMetaspaceDecoder("\u2581", false), {"\u2581\u2581a\u2581b", "\u2581c"}),
            (Tokens{"ab", " c"}));
  EXPECT_EQ(DecodeChain(*MakeMetaspaceDecoder("\u2581", true), {"\u2581\u2581a\u2581b", "\u2581c"}),
            (Tokens{"  a b", " c"}));
}

TEST(DecoderTest, ByteLevelJoinsAndRepairs) {
  const auto d = MakeByteLevelDecoder();
  EXPECT_EQ(DecodeChain(*d, {"\u0120a", "\u00e2\u0124"}), (Tokens{" a\uFFFD"}));  // E2 82 cut short
  EXPECT_EQ(DecodeChain(*d, {"\u0120a", "\u00e2\u0124"}, true), (Tokens{" a\xE2\x82"}));
}

}  // namespace
}  // namespace apr
