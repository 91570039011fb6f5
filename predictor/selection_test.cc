// Budget arithmetic, candidate layout, span building and top-k ties, against hand-worked
// cases (docs/PREDICTOR.md, "Budget and candidates").
#include "predictor/selection.h"

#include <gtest/gtest.h>

#include <cmath>

namespace apr::predictor {
namespace {

TEST(SelectionConfigTest, DefaultBudgetBlocks) {
  SelectionConfig c;  // 16 / 64 / 64, budget 1024
  EXPECT_EQ(c.budget_blocks(), 56);
  c.budget = 512;
  EXPECT_EQ(c.budget_blocks(), 24);
  c.budget = 256;
  EXPECT_EQ(c.budget_blocks(), 8);
  EXPECT_TRUE(ValidateSelectionConfig(c).ok());
}

TEST(SelectionConfigTest, RejectsBudgetsThatDoNotDivide) {
  SelectionConfig c;
  c.budget = 100;  // less than sink + local
  EXPECT_FALSE(ValidateSelectionConfig(c).ok());
  c.budget = 136;  // 128 + 8: not whole blocks
  EXPECT_FALSE(ValidateSelectionConfig(c).ok());
  c.budget = 128;  // sink + local only
  EXPECT_TRUE(ValidateSelectionConfig(c).ok());
  c.sink = 8;  // not a multiple of 16
  EXPECT_FALSE(ValidateSelectionConfig(c).ok());
  c = SelectionConfig();
  c.block = 0;
  EXPECT_FALSE(ValidateSelectionConfig(c).ok());
}

TEST(StepLayoutTest, AlignedAndPartialContexts) {
  SelectionConfig c;  // block 16, sink 64, local 64, budget 1024
  // L = 4096: history covers 4095 tokens = 256 blocks (the last partial); candidates are
  // blocks 4 .. 251.
  StepLayout l = MakeStepLayout(c, 4096);
  EXPECT_EQ(l.history_blocks, 256);
  EXPECT_EQ(l.cand_begin, 4);
  EXPECT_EQ(l.cand_end, 252);
  EXPECT_EQ(l.num_select, 56);
  // L = 4097: 4096 previous tokens, exactly 256 blocks.
  l = MakeStepLayout(c, 4097);
  EXPECT_EQ(l.history_blocks, 256);
  EXPECT_EQ(l.cand_end, 252);
  // L = 4098: 4097 previous tokens -> 257 blocks, candidates up to 253.
  l = MakeStepLayout(c, 4098);
  EXPECT_EQ(l.history_blocks, 257);
  EXPECT_EQ(l.cand_end, 253);
}

TEST(StepLayoutTest, ShortContextsHaveFewOrNoCandidates) {
  SelectionConfig c;
  StepLayout l = MakeStepLayout(c, 100);  // 99 tokens -> 7 blocks, 7 - 4 = 3 -> none
  EXPECT_EQ(l.history_blocks, 7);
  EXPECT_EQ(l.num_candidates(), 0);
  EXPECT_EQ(l.num_select, 0);
  l = MakeStepLayout(c, 1);
  EXPECT_EQ(l.history_blocks, 0);
  EXPECT_EQ(l.num_candidates(), 0);
  l = MakeStepLayout(c, 194);  // 193 tokens -> 13 blocks -> candidates 4..8
  EXPECT_EQ(l.num_candidates(), 5);
  EXPECT_EQ(l.num_select, 5);  // all fit
}

TEST(SpansForTest, SinkLocalAndBlocksMerge) {
  SelectionConfig c;
  // L = 300: sink [0, 64), local [236, 300), block 4 = [64, 80) touches the sink,
  // block 10 = [160, 176), block 14 = [224, 240) overlaps the local window.
  TokenSpans s = SpansFor(c, 300, std::vector<int64_t>{14, 4, 10});
  TokenSpans want = {{0, 80}, {160, 176}, {224, 300}};
  EXPECT_EQ(s, want);
}

TEST(SpansForTest, TinyContextIsOneSpan) {
  SelectionConfig c;
  EXPECT_EQ(SpansFor(c, 10, {}), (TokenSpans{{0, 10}}));
  EXPECT_EQ(SpansFor(c, 128, {}), (TokenSpans{{0, 128}}));
  EXPECT_EQ(SpansFor(c, 129, {}), (TokenSpans{{0, 64}, {65, 129}}));
}

TEST(SpansForTest, BudgetIsNeverExceeded) {
  SelectionConfig c;
  c.budget = 256;
  for (int64_t len : {129, 200, 1000, 3841, 4096}) {
    const StepLayout l = MakeStepLayout(c, len);
    std::vector<int64_t> blocks;
    for (int64_t i = 0; i < l.num_select; ++i) blocks.push_back(l.cand_end - 1 - 2 * i >= l.cand_begin ? l.cand_end - 1 - 2 * i : l.cand_begin + i);
    int64_t tokens = 0;
    for (auto [b, e] : SpansFor(c, len, blocks)) tokens += e - b;
    EXPECT_LE(tokens, c.budget) << len;
  }
}

TEST(TopKTest, TiesGoToTheLowerIndexAndNaNRanksLast) {
  std::vector<float> s = {1, 3, 3, NAN, 2, 3};
  EXPECT_EQ(TopK(s, 2), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(TopK(s, 3), (std::vector<int64_t>{1, 2, 5}));
  EXPECT_EQ(TopK(s, 5), (std::vector<int64_t>{0, 1, 2, 4, 5}));
  EXPECT_EQ(TopK(s, 9).size(), 6u);
  EXPECT_TRUE(TopK(s, 0).empty());
  std::vector<float> neg = {-INFINITY, NAN, -INFINITY};
  EXPECT_EQ(TopK(neg, 1), (std::vector<int64_t>{0}));
}

TEST(CoveredCandidatesTest, OnlyWholeBlocksCount) {
  SelectionConfig c;
  const StepLayout l = MakeStepLayout(c, 4096);  // candidates 4 .. 251
  TokenSpans s = {{0, 64}, {70, 96}, {160, 192}, {4000, 4096}};
  // [70, 96) covers block 5 only partly... blocks: 4 = [64, 80) partial, 5 = [80, 96) whole,
  // 10 and 11 whole, 250 = [4000, 4016) and 251 whole (candidates end at 252).
  EXPECT_EQ(CoveredCandidates(l, c.block, s), (std::vector<int64_t>{5, 10, 11, 250, 251}));
}

}  // namespace
}  // namespace apr::predictor
