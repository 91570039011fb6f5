#include "backends/cuda/cache_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

namespace apr::cuda {
namespace {

TEST(CachePlan, WantedBlocksAreSinkSelectionAndLocalWindow) {
  // len 1000: 63 blocks; local window [936, 1000) = blocks 58..62 (58 from token 8).
  const std::vector<int32_t> w = WantedBlocks(1000, {10, 20, 58});
  const std::vector<int32_t> want = {0, 1, 2, 3, 10, 20, 58, 59, 60, 61, 62};
  EXPECT_EQ(w, want);
  // Short contexts: sink and local window overlap; every block once.
  EXPECT_EQ(WantedBlocks(70, {}), (std::vector<int32_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(WantedBlocks(1, {}), (std::vector<int32_t>{0}));
}

TEST(CachePlan, SeedBlocksExistBeforeTheFirstStep) {
  // 1000 tokens: the next step (1001) has local window [937, 1001): blocks 58..62 exist.
  EXPECT_EQ(SeedBlocks(1000), (std::vector<int32_t>{0, 1, 2, 3, 58, 59, 60, 61, 62}));
  // 1024 tokens: block 64 is created by the next step, not seeded.
  const auto s = SeedBlocks(1024);
  EXPECT_EQ(s.back(), 63);
  EXPECT_EQ(SeedBlocks(10), (std::vector<int32_t>{0}));
}

TEST(CachePlan, OnlyTheDifferenceIsFetched) {
  CacheImageModel m(16);
  const int len = 1001;
  m.Seed(SeedBlocks(1000));
  CachePlanCounts c = m.Plan(len, {10, 20, 30});
  EXPECT_FALSE(c.error);
  EXPECT_EQ(c.fetched, 3);
  EXPECT_EQ(c.hits, 0);
  EXPECT_EQ(c.predicted, 3);
  // Next step: two stay, one changes.
  c = m.Plan(len + 1, {10, 20, 40});
  EXPECT_FALSE(c.error);
  EXPECT_EQ(c.fetched, 1);
  EXPECT_EQ(c.hits, 2);
  // 30 was not evicted while free slots remained: coming back is a hit.
  c = m.Plan(len + 2, {10, 30, 40});
  EXPECT_EQ(c.fetched, 0);
  EXPECT_EQ(c.hits, 3);
  // Without reuse every predicted block is fetched again.
  c = m.Plan(len + 3, {10, 30, 40}, /*reuse=*/false);
  EXPECT_EQ(c.fetched, 3);
  EXPECT_EQ(c.hits, 0);
}

TEST(CachePlan, EvictsTheLeastRecentlyWantedWhenFull) {
  // 9 seeded + 3 predicted = 12 slots, no spare.
  CacheImageModel m(13);
  m.Seed(SeedBlocks(1000));
  m.Plan(1001, {10, 20, 30});  // slots 9, 10, 11; slot 12 free
  m.Plan(1002, {10, 20, 40});  // 40 -> the free slot 12; 30 stays (stamp 1001)
  EXPECT_GE(m.where(30), 0);
  CachePlanCounts c = m.Plan(1003, {10, 20, 50});  // full: evict 30 (wanted at 1001), not 40
  EXPECT_EQ(c.fetched, 1);
  EXPECT_LT(m.where(30), 0);
  EXPECT_GE(m.where(40), 0);
  c = m.Plan(1004, {10, 40, 50});  // 40 comes back: a hit
  EXPECT_EQ(c.hits, 3);
  EXPECT_EQ(c.fetched, 0);
}

TEST(CachePlan, NewTailBlockGetsASlotWithoutFetch) {
  CacheImageModel m(12);
  m.Seed(SeedBlocks(1024));  // blocks 0..3 and 60..63
  const CachePlanCounts c = m.Plan(1025, {});
  EXPECT_FALSE(c.error);
  EXPECT_EQ(c.allocated, 1);
  EXPECT_EQ(c.fetched, 0);
  EXPECT_GE(m.where(64), 0);
}

TEST(CachePlan, MissingLocalBlockIsAnError) {
  CacheImageModel m(12);
  m.Seed({0, 1, 2, 3});  // the local window was never cached
  EXPECT_TRUE(m.Plan(1001, {}).error);
}

TEST(CachePlan, TooSmallCacheIsAnError) {
  CacheImageModel m(9);
  m.Seed(SeedBlocks(1000));  // 9 blocks fill it
  EXPECT_TRUE(m.Plan(1001, {10}).error);
}

// A long random run: sink, local window and tail are never evicted; the cache always holds
// exactly the wanted set plus leftovers; counts add up.
TEST(CachePlan, RandomRunKeepsInvariants) {
  std::mt19937 rng(3);
  const int k = 8, slots = MaxListLength(k) + 4;
  CacheImageModel m(slots);
  int len = 2000;
  m.Seed(SeedBlocks(len));
  std::vector<int32_t> sel;
  for (int step = 0; step < 500; ++step) {
    ++len;
    const int cand = NumCandidates(len);
    std::set<int32_t> s;
    // Mostly the previous selection, some churn.
    for (int32_t b : sel)
      if (rng() % 4 != 0 && b < kSinkBlocks + cand) s.insert(b);
    while (static_cast<int>(s.size()) < std::min(k, cand)) s.insert(kSinkBlocks + rng() % cand);
    sel.assign(s.begin(), s.end());
    const std::vector<int32_t> w = WantedBlocks(len, sel);
    const CachePlanCounts c = m.Plan(len, sel);
    ASSERT_FALSE(c.error) << "step " << step;
    // Sink, local window and tail never miss: only predicted blocks are fetched.
    EXPECT_EQ(c.fetched, c.predicted - c.hits);
    for (int32_t b : w) ASSERT_GE(m.where(b), 0) << "wanted block " << b << " not cached";
    std::set<int32_t> seen;
    for (int32_t t : m.tags())
      if (t >= 0) ASSERT_TRUE(seen.insert(t).second) << "block " << t << " cached twice";
  }
}

}  // namespace
}  // namespace apr::cuda
