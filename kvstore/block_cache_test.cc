#include "kvstore/block_cache.h"

#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace apr::kvstore {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(BlockCacheTest, OnlyTheDifferenceIsFetched) {
  BlockCache c(6);
  CachePlan p;
  ASSERT_TRUE(c.Plan({0, 1, 2, 9}, &p).ok());
  EXPECT_THAT(p.fetch, ElementsAre(0, 1, 2, 3));
  const std::vector<int32_t> first = p.slot;
  // Next step: 0, 1, 9 stay; 5 is new.
  ASSERT_TRUE(c.Plan({0, 1, 5, 9}, &p).ok());
  EXPECT_THAT(p.fetch, ElementsAre(2));
  EXPECT_EQ(p.slot[0], first[0]);
  EXPECT_EQ(p.slot[1], first[1]);
  EXPECT_EQ(p.slot[3], first[3]);
  // Unchanged selection: nothing moves.
  ASSERT_TRUE(c.Plan({0, 1, 5, 9}, &p).ok());
  EXPECT_THAT(p.fetch, IsEmpty());
  EXPECT_EQ(c.stats().hits, 3 + 4);
  EXPECT_EQ(c.stats().misses, 4 + 1);
}

TEST(BlockCacheTest, EvictsLeastRecentlySelectedNeverTheCurrentSelection) {
  BlockCache c(4);
  CachePlan p;
  ASSERT_TRUE(c.Plan({10, 11}, &p).ok());
  ASSERT_TRUE(c.Plan({12, 13}, &p).ok());  // full now: 10, 11 older
  ASSERT_TRUE(c.Plan({12, 14, 15}, &p).ok());
  EXPECT_THAT(p.fetch, ElementsAre(1, 2));
  EXPECT_TRUE(c.contains(12));
  EXPECT_TRUE(c.contains(13)) << "13 was selected more recently than 10 and 11";
  EXPECT_FALSE(c.contains(10));
  EXPECT_FALSE(c.contains(11));
  // Slots of one plan are distinct.
  ASSERT_TRUE(c.Plan({1, 2, 3, 4}, &p).ok());
  EXPECT_EQ(std::set<int32_t>(p.slot.begin(), p.slot.end()).size(), 4u);
  EXPECT_EQ(c.resident(), 4);
}

TEST(BlockCacheTest, TooManyOrRepeatedBlocksAreErrors) {
  BlockCache c(2);
  CachePlan p;
  EXPECT_EQ(c.Plan({1, 2, 3}, &p).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(c.Plan({1, 1}, &p).code(), absl::StatusCode::kInvalidArgument);
  c.Clear();
  ASSERT_TRUE(c.Plan({4}, &p).ok());
  EXPECT_EQ(c.Plan({4, 4}, &p).code(), absl::StatusCode::kInvalidArgument);
}

TEST(BlockCacheTest, InsertAndInvalidate) {
  BlockCache c(2);
  const int32_t s = c.Insert(7);
  CachePlan p;
  ASSERT_TRUE(c.Plan({7}, &p).ok());
  EXPECT_THAT(p.fetch, IsEmpty());
  EXPECT_EQ(p.slot[0], s);
  c.Invalidate(7);
  ASSERT_TRUE(c.Plan({7}, &p).ok());
  EXPECT_THAT(p.fetch, ElementsAre(0));
}

}  // namespace
}  // namespace apr::kvstore
