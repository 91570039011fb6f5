// SentencePiece-style tokenizers of testdata/ (made by make_spm_testdata.py):
// llama2_tiny.json (Llama-2: Prepend + Replace normalizer, byte_fallback, fuse_unk,
// Replace/ByteFallback/Fuse/Strip decoder) and mistral_tiny.json (Mistral v0.3:
// Metaspace pre-tokenizer with prepend_scheme first, Metaspace decoder, no byte tokens).
// Ids by hand: <unk> 0, <s> 1, </s> 2. llama2_tiny: "<0xNN>" = 3 + NN, then ▁ 259,
// a 260, b 261, c 262, H 263, i 264, ! 265, merges ▁a 266, ▁ab 267, Hi 268, added
// "ab!" 269 (normalized: matched as "▁ab!"), "<x>" 270 (lstrip, rstrip).
// mistral_tiny: ▁ 3, a 4, b 5, c 6, H 7, i 8, ! 9, ▁a 10, ▁ab 11, Hi 12, "ab!" 13, "<x>" 14.
// Worked out by hand; Hugging Face tokenizers 0.23.2 gives the same.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/tokenizer/testdata_path.h"
#include "runtime/tokenizer/tokenizer.h"

namespace apr {
namespace {

using Ids = std::vector<int32_t>;

std::unique_ptr<Tokenizer> Load(const std::string& name) {
  auto tokenizer = Tokenizer::FromFile(TestdataPath(name));
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
}

std::string Stream(const Tokenizer& tok, const Ids& ids, bool skip = true) {
  StreamDecoder stream(tok, skip);
  std::string out;
  for (int32_t id : ids) out += stream.Push(id);
  return out + stream.Flush();
}

TEST(Llama2TinyTest, Encodes) {
  const auto tok = Load("llama2_tiny.json");
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->Encode("ab"), (Ids{1, 267}));  // "▁ab"
  EXPECT_EQ(tok->Encode("", true), (Ids{1}));   // nothing is prepended to empty text
  EXPECT_EQ(tok->Encode("a b", false), (Ids{266, 259, 261}));  // ▁a ▁ b
  // € is not in the vocabulary: its bytes E2 82 AC become <0xE2> <0x82> <0xAC>.
  EXPECT_EQ(tok->Encode("Hi\u20ac", false), (Ids{259, 268, 229, 133, 175}));
  // "ab!" is normalized to "▁ab!" and so is found after a space, or at the start.
  EXPECT_EQ(tok->Encode("x ab!", false), (Ids{259, 123, 269}));
  EXPECT_EQ(tok->Encode("ab!", false), (Ids{269}));
  EXPECT_EQ(tok->Encode("xab!", false), (Ids{259, 123, 260, 261, 265}));
  // <s> is cut out of the raw text first; each side is normalized on its own, so the
  // text after it gets its own ▁ (Llama-2's "legacy" behaviour).
  EXPECT_EQ(tok->Encode("hi<s>ab", false), (Ids{259, 107, 264, 1, 267}));
  // lstrip and rstrip take the spaces around <x>.
  EXPECT_EQ(tok->Encode("a <x> b", false), (Ids{266, 270, 259, 261}));
}

TEST(Llama2TinyTest, Decodes) {
  const auto tok = Load("llama2_tiny.json");
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->DecodeText({259, 268, 229, 133, 175}), "Hi\u20ac");
  EXPECT_EQ(tok->DecodeText({1, 259, 268}), "<s> Hi");  // Strip: '<' is no space
  EXPECT_EQ(tok->DecodeText({1, 259, 268}, true), "Hi");
  // A byte run that is not UTF-8: one U+FFFD per byte; Decode keeps the bytes.
  EXPECT_EQ(tok->DecodeText({229, 133}), "\uFFFD\uFFFD");
  EXPECT_EQ(tok->Decode({229, 133}), "\xE2\x82");
  EXPECT_EQ(tok->DecodeText({266, 270, 259, 261}), "a<x> b");
  EXPECT_EQ(Stream(*tok, {259, 268, 229, 133, 175}), "Hi\u20ac");
  EXPECT_EQ(Stream(*tok, {1, 259, 268, 266, 259, 261}), "Hi a b");
}

TEST(MistralTinyTest, Encodes) {
  const auto tok = Load("mistral_tiny.json");
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->Encode("ab"), (Ids{1, 11}));
  // prepend_scheme first: only text at the very start gets the ▁.
  EXPECT_EQ(tok->Encode("<s>ab", false), (Ids{1, 4, 5}));
  EXPECT_EQ(tok->Encode("a  b", false), (Ids{10, 3, 3, 5}));  // split false: one piece
  // Unknown characters: consecutive ones give one <unk> (fuse_unk).
  EXPECT_EQ(tok->Encode("a\u20ac\u20acb", false), (Ids{10, 0, 5}));
  EXPECT_EQ(tok->Encode("\u20aca\u20ac", false), (Ids{3, 0, 4, 0}));
  EXPECT_EQ(tok->Encode("xab!", false), (Ids{3, 0, 13}));  // no normalizer: "ab!" as is
}

TEST(MistralTinyTest, Decodes) {
  const auto tok = Load("mistral_tiny.json");
  ASSERT_NE(tok, nullptr);
  // The Metaspace decoder drops every ▁ of the first token, and makes the others spaces.
  EXPECT_EQ(tok->DecodeText({10, 3, 5}), "a b");
  EXPECT_EQ(tok->DecodeText({3, 10}), " a");
  EXPECT_EQ(tok->DecodeText({1, 10}), "<s> a");
  EXPECT_EQ(tok->DecodeText({1, 10}, true), "a");
  // Streamed, later tokens keep their spaces.
  EXPECT_EQ(Stream(*tok, {10, 3, 5}), "a b");
  EXPECT_EQ(Stream(*tok, {1, 10, 10}), "a a");
}

}  // namespace
}  // namespace apr
