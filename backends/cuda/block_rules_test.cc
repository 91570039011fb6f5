// The block-list arithmetic against a brute-force statement of the rules
// (docs/ARCHITECTURE.md: 16-token blocks, 64-token sink, 64-token local window).
#include "backends/cuda/block_rules.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

namespace apr::cuda {
namespace {

TEST(BlockRules, SmallCases) {
  EXPECT_EQ(NumBlocks(1), 1);
  EXPECT_EQ(NumBlocks(16), 1);
  EXPECT_EQ(NumBlocks(17), 2);
  EXPECT_EQ(HistoryBlocks(17), 1);
  EXPECT_EQ(FirstLocalBlock(64), 0);
  EXPECT_EQ(FirstLocalBlock(80), 1);
  EXPECT_EQ(LocalStart(81), 17);
  EXPECT_EQ(SinkBlocks(20), 2);
  EXPECT_EQ(SinkBlocks(5000), 4);
  EXPECT_EQ(PredictedBlocks(1024), 56);
  EXPECT_EQ(PredictedBlocks(2048), 120);
  EXPECT_EQ(NumCandidates(128), 0);
  // L = 4097: N = ceil(4096 / 16) = 256 history blocks, candidates [4, 252).
  EXPECT_EQ(NumCandidates(4097), 248);
  // L = 4098: N = 257, candidates [4, 253); block 252 straddles the local window (which
  // starts at token 4034 = block 252 + 2).
  EXPECT_EQ(NumCandidates(4098), 249);
  EXPECT_EQ(FirstLocalBlock(4098), 252);
}

// The rules of docs/PREDICTOR.md, spelled out per token for every length up to 3000 and a
// few budgets: attended tokens = [0, min(64, L)) + [max(0, L - 64), L) + chosen blocks, with
// candidates [4, ceil((L - 1) / 16) - 4); a list built as BuildListsKernel builds it covers
// exactly those tokens, and ListLengthBound / MaxListLength bound its length.
TEST(BlockRules, AgreesWithReferenceRules) {
  for (int k : {1, 2, 3, 8, 56}) {
    for (int len = 1; len <= 3000; ++len) {
      const int n_hist = (len - 1 + 15) / 16;
      const int cand_end = std::max(4, n_hist - 4);
      ASSERT_EQ(NumCandidates(len), cand_end - 4) << len;
      const int c = cand_end - 4;
      ASSERT_EQ(KeptCandidates(len, k), std::min(c, k)) << len;
      ASSERT_EQ(NeedsPrediction(len, k), c > k && c >= 3) << len;
      // Choose, say, the highest candidates (the worst case for overlap with the window).
      std::set<int> chosen;
      for (int i = 0; i < std::min(c, k); ++i) chosen.insert(cand_end - 1 - i);
      std::set<int> tokens;
      for (int t = 0; t < std::min(64, len); ++t) tokens.insert(t);
      for (int t = std::max(0, len - 64); t < len; ++t) tokens.insert(t);
      for (int b : chosen)
        for (int t = b * 16; t < std::min(len, b * 16 + 16); ++t) tokens.insert(t);
      // The list: sink blocks, chosen, local blocks; first token per block.
      std::map<int, int> list;
      for (int b = 0; b < SinkBlocks(len); ++b) list[b] = 0;
      for (int b : chosen) list[b] = 0;
      for (int b = FirstLocalBlock(len); b < NumBlocks(len); ++b) {
        const int first = b == FirstLocalBlock(len) ? LocalStart(len) % 16 : 0;
        list[b] = list.count(b) ? std::min(list[b], first) : first;
      }
      std::set<int> covered;
      for (const auto& [b, first] : list)
        for (int t = b * 16 + first; t < std::min(len, b * 16 + 16); ++t) covered.insert(t);
      ASSERT_EQ(covered, tokens) << "len " << len << " k " << k;
      ASSERT_LE(static_cast<int>(list.size()), ListLengthBound(len, k)) << len;
      ASSERT_GE(static_cast<int>(list.size()), ListLengthBound(len, k) - 1) << len;
      ASSERT_LE(static_cast<int>(list.size()), MaxListLength(k)) << len;
    }
  }
}

TEST(BlockRules, SplitsCoverEveryEntryOnce) {
  for (int n = 1; n < 300; ++n) {
    for (int splits = 1; splits < 70; ++splits) {
      const int per = SplitSize(n, splits), used = UsedSplits(n, splits);
      ASSERT_LE(used, splits);
      int covered = 0;
      for (int s = 0; s < splits; ++s) {
        const int b = s * per, e = std::min(n, b + per);
        if (s < used) {
          ASSERT_LT(b, e) << n << " " << splits << " " << s;
          covered += e - b;
        } else {
          ASSERT_GE(b, e) << n << " " << splits << " " << s;
        }
      }
      ASSERT_EQ(covered, n);
    }
  }
}

TEST(BlockRules, ChooseSplits) {
  // Batch 1, 8 KV heads, 128K dense (8192 blocks), 132 SMs: one wave of 3 CTAs per SM.
  EXPECT_EQ(ChooseSplits(1, 8, 8192, 132), 49);
  EXPECT_EQ(ChooseSplits(8, 8, 2048, 132), 6);
  // A 64-entry sparse list is not split below 4 blocks (one per warp) per CTA.
  EXPECT_EQ(ChooseSplits(1, 8, 64, 132), 16);
  EXPECT_EQ(ChooseSplits(8, 8, 1, 132), 1);
}

// predictor-hybrid's split of the k predicted blocks, as the CPU policy computes it
// (predictor/policy.cc MakePolicy: query_blocks = max(1, k / 4); the CNN keeps the rest).
TEST(BlockRules, HybridSplitsTheBudgetAsTheCpuPolicy) {
  for (int k = 1; k <= 600; ++k) {
    const int q = std::max(1, k / 4);
    EXPECT_EQ(HybridQueryBlocks(k), q) << k;
    EXPECT_EQ(HybridCnnBlocks(k), k - std::min(q, k)) << k;
  }
  EXPECT_EQ(HybridQueryBlocks(PredictedBlocks(1024)), 14);  // 56 = 42 CNN + 14 query
  EXPECT_EQ(HybridCnnBlocks(1), 0);
}

}  // namespace
}  // namespace apr::cuda
