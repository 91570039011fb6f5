#include "runtime/tokenizer/bpe.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace apr {
namespace {

using Ids = std::vector<int32_t>;

// a=0 b=1 c=2 ab=3 bc=4 abc=5 aa=6; merge ranks: (a b)=0 (b c)=1 (ab c)=2 (a a)=3.
std::unique_ptr<Bpe> Make(Bpe::Options options = {}, Bpe::Merges merges = {{"a", "b"},
                                                                             {"b", "c"},
                                                                             {"ab", "c"},
                                                                             {"a", "a"}}) {
  Bpe::Vocab vocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}, {"aa", 6}};
  if (options.unk_token) vocab[*options.unk_token] = 7;
  auto bpe = Bpe::Create(std::move(vocab), merges, std::move(options));
  EXPECT_TRUE(bpe.ok()) << bpe.status();
  return *std::move(bpe);
}

Ids Tokenize(const Bpe& bpe, std::string_view word) {
  Ids ids;
  bpe.Tokenize(word, &ids);
  return ids;
}

TEST(BpeTest, MergesLowestRankFirst) {
  auto bpe = Make();
  EXPECT_EQ(Tokenize(*bpe, "abc"), (Ids{5}));     // a b c -> ab c -> abc
  EXPECT_EQ(Tokenize(*bpe, "bcab"), (Ids{4, 3}));  // (a b) ranks before (b c)
  EXPECT_EQ(Tokenize(*bpe, "cab"), (Ids{2, 3}));
  EXPECT_EQ(Tokenize(*bpe, ""), (Ids{}));
}

TEST(BpeTest, EqualRanksMergeLeftmostFirst) {
  auto bpe = Make();
  EXPECT_EQ(Tokenize(*bpe, "aaa"), (Ids{6, 0}));
  EXPECT_EQ(Tokenize(*bpe, "aaaa"), (Ids{6, 6}));
}

TEST(BpeTest, CachedWordsGiveTheSameIds) {
  auto bpe = Make();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Tokenize(*bpe, "bcab"), (Ids{4, 3}));
}

TEST(BpeTest, IgnoreMergesEmitsAWholeWordInTheVocab) {
  // Only (b c) is a merge, so merging cannot reach "abc".
  auto plain = Make({}, {{"b", "c"}});
  EXPECT_EQ(Tokenize(*plain, "abc"), (Ids{0, 4}));
  auto ignoring = Make({.ignore_merges = true}, {{"b", "c"}});
  EXPECT_EQ(Tokenize(*ignoring, "abc"), (Ids{5}));
  EXPECT_EQ(Tokenize(*ignoring, "abcb"), (Ids{0, 4, 1}));  // not in the vocab: merged
}

TEST(BpeTest, UnknownCharacters) {
  // No unk_token: dropped, and the neighbours then merge as if adjacent (as in HF).
  EXPECT_EQ(Tokenize(*Make(), "axxb"), (Ids{3}));
  EXPECT_EQ(Tokenize(*Make(), "axxc"), (Ids{0, 2}));
  EXPECT_EQ(Tokenize(*Make({.unk_token = "<unk>"}), "axxb"), (Ids{0, 7, 7, 1}));
  EXPECT_EQ(Tokenize(*Make({.unk_token = "<unk>", .fuse_unk = true}), "axxbx"),
            (Ids{0, 7, 1, 7}));
  // Unknown characters still separate the symbols around them.
  EXPECT_EQ(Tokenize(*Make({.unk_token = "<unk>"}), "a\xC3\xA9" "b"), (Ids{0, 7, 1}));
}

TEST(BpeTest, LaterDuplicateMergeKeepsItsRank) {
  // (b c) listed again after (a b): now (a b) wins on "abc".
  auto bpe = Make({}, {{"b", "c"}, {"a", "b"}, {"b", "c"}});
  EXPECT_EQ(Tokenize(*bpe, "abc"), (Ids{3, 2}));
}

TEST(BpeTest, Lookups) {
  auto bpe = Make();
  EXPECT_EQ(bpe->TokenToId("ab"), 3);
  EXPECT_EQ(bpe->TokenToId("zz"), std::nullopt);
  ASSERT_NE(bpe->IdToToken(5), nullptr);
  EXPECT_EQ(*bpe->IdToToken(5), "abc");
  EXPECT_EQ(bpe->IdToToken(99), nullptr);
  EXPECT_EQ(bpe->IdToToken(-1), nullptr);
}

TEST(BpeTest, RejectsMergesOutsideTheVocab) {
  auto missing_part = Bpe::Create({{"a", 0}, {"ab", 1}}, {{"a", "b"}}, {});
  EXPECT_FALSE(missing_part.ok());
  auto missing_result = Bpe::Create({{"a", 0}, {"b", 1}}, {{"a", "b"}}, {});
  EXPECT_FALSE(missing_result.ok());
  auto missing_unk = Bpe::Create({{"a", 0}}, {}, {.unk_token = "<unk>"});
  EXPECT_FALSE(missing_unk.ok());
  EXPECT_NE(missing_unk.status().message().find("<unk>"), absl::string_view::npos);
}

TEST(BpeTest, RejectsIdsFarBeyondTheVocabSize) {
  // One entry with a huge id would otherwise size the id table at 16 GB.
  auto sparse = Bpe::Create({{"a", 0}, {"b", 2000000000}}, {}, {});
  ASSERT_FALSE(sparse.ok());
  EXPECT_NE(sparse.status().message().find("vocab id 2000000000 for 2 tokens"),
            absl::string_view::npos)
      << sparse.status();
  // Gaps of ordinary size (ids kept for added tokens) are fine.
  auto gaps = Bpe::Create({{"a", 0}, {"b", 900}}, {}, {});
  ASSERT_TRUE(gaps.ok()) << gaps.status();
  EXPECT_EQ(*(*gaps)->IdToToken(900), "b");
}

}  // namespace
}  // namespace apr
