// The history update: block max-pooling with GQA, shift, zero column when the context gains
// a block; hand-computed cases.
#include "predictor/history.h"

#include <gtest/gtest.h>

#include <vector>

namespace apr::predictor {
namespace {

std::vector<float> Rows(const AttentionHistory& h) {
  return std::vector<float>(h.data(), h.data() + h.rows() * h.cols());
}

TEST(PoolGroupRowTest, MaxOverBlockAndGroupWithPartialTail) {
  // 4 query heads, 2 KV heads (group 2), 7 tokens, block 3 -> 3 blocks, the last has 1 token.
  const std::vector<float> p = {
      .1f, .5f, .0f, .2f, .0f, .1f, .1f,  // head 0 (KV 0)
      .3f, .1f, .1f, .0f, .4f, .0f, .1f,  // head 1 (KV 0)
      .0f, .0f, .9f, .0f, .0f, .0f, .1f,  // head 2 (KV 1)
      .2f, .0f, .0f, .1f, .1f, .1f, .5f,  // head 3 (KV 1)
  };
  std::vector<float> out(3);
  PoolGroupRow(p.data(), 7, 0, 2, 7, 3, out.data());
  EXPECT_EQ(out, (std::vector<float>{.5f, .4f, .1f}));
  PoolGroupRow(p.data(), 7, 1, 2, 7, 3, out.data());
  EXPECT_EQ(out, (std::vector<float>{.9f, .1f, .5f}));
}

TEST(PoolGroupRowTest, HeadStrideLargerThanLength) {
  // Prefill layout [heads][rows][len]: row r of head h at (h * rows + r) * len.
  const std::vector<float> p = {1, 2, 3, 4, /*h0 r1*/ 5, 6, 7, 8,
                                8, 7, 6, 5, /*h1 r1*/ 0, 9, 0, 0};
  std::vector<float> out(2);
  PoolGroupRow(p.data() + 4, /*head_stride=*/8, 0, 2, 4, 2, out.data());  // row 1 of both heads
  EXPECT_EQ(out, (std::vector<float>{9, 8}));
}

TEST(AttentionHistoryTest, ShiftKeepsWidth) {
  AttentionHistory h(3);
  h.Reset(2);
  h.Push(std::vector<float>{1, 2});
  h.Push(std::vector<float>{3, 4});
  EXPECT_EQ(Rows(h), (std::vector<float>{0, 0, 1, 2, 3, 4}));
  h.Push(std::vector<float>{5, 6});
  h.Push(std::vector<float>{7, 8});
  EXPECT_EQ(Rows(h), (std::vector<float>{3, 4, 5, 6, 7, 8}));
}

TEST(AttentionHistoryTest, NewBlockAppendsAZeroColumnToKeptRows) {
  AttentionHistory h(3);
  h.Reset(2);
  h.Push(std::vector<float>{1, 2});
  h.Push(std::vector<float>{3, 4});
  h.Push(std::vector<float>{5, 6});
  h.Push(std::vector<float>{7, 8, 9});  // the context gained a block
  EXPECT_EQ(h.cols(), 3);
  EXPECT_EQ(Rows(h), (std::vector<float>{3, 4, 0, 5, 6, 0, 7, 8, 9}));
  h.Push(std::vector<float>{1, 1, 1});
  EXPECT_EQ(Rows(h), (std::vector<float>{5, 6, 0, 7, 8, 9, 1, 1, 1}));
}

TEST(AttentionHistoryTest, WidenPadsEveryRow) {
  AttentionHistory h(2);
  h.Reset(1);
  h.Push(std::vector<float>{1});
  h.Widen(3);
  EXPECT_EQ(Rows(h), (std::vector<float>{0, 0, 0, 1, 0, 0}));
  h.Widen(2);  // narrower: no-op
  EXPECT_EQ(h.cols(), 3);
}

}  // namespace
}  // namespace apr::predictor
