// The block-list arithmetic against a brute-force statement of the rules
// (docs/ARCHITECTURE.md: 16-token blocks, 64-token sink, 64-token local window).
#include "runtime/cuda/block_rules.h"

#include <gtest/gtest.h>

#include <set>

namespace apr::cuda {
namespace {

TEST(BlockRules, SmallCases) {
  EXPECT_EQ(NumBlocks(1), 1);
  EXPECT_EQ(NumBlocks(16), 1);
  EXPECT_EQ(NumBlocks(17), 2);
  EXPECT_EQ(FirstLocalBlock(64), 0);
  EXPECT_EQ(FirstLocalBlock(65), 0);
  EXPECT_EQ(FirstLocalBlock(80), 1);
  EXPECT_EQ(FirstLocalBlock(81), 1);
  EXPECT_EQ(PredictedBlocks(1024), 56);
  EXPECT_EQ(PredictedBlocks(2048), 120);
  EXPECT_EQ(NumCandidates(128), 0);
  EXPECT_EQ(NumCandidates(4096), 256 - 4 - 4);
  EXPECT_EQ(NumCandidates(4097), 256 - 4 - 4);  // tokens 4033..4096 are in blocks 252..256
}

// Sink, local and candidate sets from their definitions, for every length up to 3000 and a
// few budgets: disjoint, covering [0, nb), and ListLength / MaxListLength agree.
TEST(BlockRules, AgreesWithDefinitions) {
  for (int k : {1, 2, 3, 8, 56}) {
    int longest = 0;
    for (int len = 1; len <= 3000; ++len) {
      const int nb = NumBlocks(len);
      std::set<int> sink, local, cand;
      for (int b = 0; b < nb; ++b) {
        const int t0 = b * 16, t1 = std::min(len, t0 + 16);  // tokens [t0, t1)
        const bool in_sink = t0 < 64;
        const bool in_local = t1 > len - 64;
        if (in_local) {
          local.insert(b);
        } else if (in_sink) {
          sink.insert(b);
        } else {
          cand.insert(b);
        }
      }
      ASSERT_EQ(NumCandidates(len), static_cast<int>(cand.size())) << len;
      if (!cand.empty()) {
        ASSERT_EQ(*cand.begin(), kSinkBlocks) << len;
        ASSERT_EQ(*cand.rbegin(), FirstLocalBlock(len) - 1) << len;
      }
      ASSERT_EQ(*local.begin(), FirstLocalBlock(len)) << len;
      const int c = static_cast<int>(cand.size());
      const bool predict = c >= 3 && c > k;
      ASSERT_EQ(NeedsPrediction(len, k), predict) << len;
      const int kept = predict ? k : c;
      ASSERT_EQ(ListLength(len, k), static_cast<int>(sink.size() + local.size()) + kept) << len;
      longest = std::max(longest, ListLength(len, k));
    }
    EXPECT_LE(longest, MaxListLength(k)) << k;
    EXPECT_GE(longest + 1, MaxListLength(k) - 1) << k;  // the bound is nearly tight
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

}  // namespace
}  // namespace apr::cuda
