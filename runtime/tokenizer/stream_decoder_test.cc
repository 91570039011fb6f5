#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/tokenizer/testdata_path.h"
#include "runtime/tokenizer/tokenizer.h"
#include "runtime/tokenizer/utf8.h"

namespace apr {
namespace {

using Ids = std::vector<int32_t>;

class StreamDecoderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tok = Tokenizer::FromFile(TestdataPath("llama3_tiny.json"));
    ASSERT_TRUE(tok.ok()) << tok.status();
    tok_ = *std::move(tok);
  }

  // Pushes every id; checks each piece is whole UTF-8; returns the pieces.
  std::vector<std::string> Stream(const Ids& ids, bool skip_special = false) {
    StreamDecoder decoder(*tok_, skip_special);
    std::vector<std::string> pieces;
    for (int32_t id : ids) pieces.push_back(decoder.Push(id));
    pieces.push_back(decoder.Flush());
    for (const std::string& p : pieces) EXPECT_TRUE(utf8::IsValid(p)) << p;
    return pieces;
  }

  static std::string Join(const std::vector<std::string>& pieces) {
    std::string out;
    for (const std::string& p : pieces) out += p;
    return out;
  }

  std::unique_ptr<Tokenizer> tok_;
};

TEST_F(StreamDecoderTest, HoldsBackASplitCharacter) {
  // The tiny vocabulary has no merges inside 😀 (F0 9F 98 80): one token per byte.
  const Ids ids = tok_->Encode("a😀b", false);
  ASSERT_EQ(ids, (Ids{97, 240, 159, 152, 128, 98}));
  EXPECT_EQ(Stream(ids), (std::vector<std::string>{"a", "", "", "", "😀", "b", ""}));
}

TEST_F(StreamDecoderTest, ConcatenationEqualsDecode) {
  for (const std::string text :
       {"Hello world!!  \n\n  x", "café 日本語 😀👨‍👩‍👧 é", "<|begin_of_text|>hi<|eot_id|>ü", "", "\n"}) {
    const Ids ids = tok_->Encode(text, true);
    EXPECT_EQ(Join(Stream(ids)), tok_->Decode(ids)) << text;
    EXPECT_EQ(Join(Stream(ids, true)), tok_->Decode(ids, true)) << text;
  }
}

TEST_F(StreamDecoderTest, SkipsSpecialTokensByDefault) {
  StreamDecoder decoder(*tok_);
  EXPECT_EQ(decoder.Push(276), "");
  EXPECT_EQ(decoder.Push(273), "hi");
  EXPECT_EQ(decoder.Push(279), "<tool>");  // added, but not special
}

TEST_F(StreamDecoderTest, BrokenBytesBecomeReplacementCharacters) {
  StreamDecoder decoder(*tok_);
  EXPECT_EQ(decoder.Push(255), "\uFFFD");  // 0xFF can never start a character: settled now
  EXPECT_EQ(decoder.Push(240), "");        // F0: could still become a character
  EXPECT_EQ(decoder.Push(97), "\uFFFDa");  // ... but 'a' cannot continue it
  EXPECT_EQ(decoder.Push(226), "");        // E2 82: cut short by the end of generation
  EXPECT_EQ(decoder.Push(130), "");
  EXPECT_EQ(decoder.Flush(), "\uFFFD");
  EXPECT_EQ(decoder.Flush(), "");
}

// Any id sequence: every piece is whole UTF-8 and the pieces add up to Decode, repaired.
TEST_F(StreamDecoderTest, RandomIdsAddUpToRepairedDecode) {
  uint32_t state = 12345;
  const auto next = [&] { return state = state * 1103515245u + 12345u; };
  for (int round = 0; round < 500; ++round) {
    Ids ids(next() % 12);
    for (int32_t& id : ids) id = static_cast<int32_t>((next() >> 8) % tok_->vocab_size());
    EXPECT_EQ(Join(Stream(ids)), utf8::Repair(tok_->Decode(ids)));
    EXPECT_EQ(Join(Stream(ids, true)), utf8::Repair(tok_->Decode(ids, true)));
  }
}

}  // namespace
}  // namespace apr
