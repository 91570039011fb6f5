#include "backends/cuda/kv_pool.h"

#include <gtest/gtest.h>

#include <set>

namespace apr::cuda {
namespace {

TEST(KvPoolAllocator, SlotsAndGroupsComeBack) {
  KvPoolAllocator a(/*num_groups=*/10, /*max_sequences=*/2, /*max_blocks=*/6);
  auto s0 = a.AcquireSequence();
  auto s1 = a.AcquireSequence();
  ASSERT_TRUE(s0.ok() && s1.ok());
  EXPECT_NE(*s0, *s1);
  EXPECT_EQ(a.AcquireSequence().status().code(), absl::StatusCode::kResourceExhausted);

  std::vector<int32_t> g0, g1;
  ASSERT_TRUE(a.Grow(g0, 4).ok());
  EXPECT_EQ(g0, (std::vector<int32_t>{0, 1, 2, 3}));  // lowest ids first
  ASSERT_TRUE(a.Grow(g1, 6).ok());
  EXPECT_EQ(a.free_groups(), 0);
  EXPECT_EQ(a.Grow(g0, 5).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(g0.size(), 4u);  // nothing taken on failure
  EXPECT_EQ(a.Grow(g1, 7).code(), absl::StatusCode::kOutOfRange);
  ASSERT_TRUE(a.Grow(g0, 3).ok());  // shrinking is a no-op
  EXPECT_EQ(g0.size(), 4u);

  std::set<int32_t> all(g0.begin(), g0.end());
  all.insert(g1.begin(), g1.end());
  EXPECT_EQ(all.size(), 10u);  // no group handed out twice

  a.ReleaseSequence(*s0, g0);
  EXPECT_TRUE(g0.empty());
  EXPECT_EQ(a.free_groups(), 4);
  auto s2 = a.AcquireSequence();
  ASSERT_TRUE(s2.ok());
  EXPECT_EQ(*s2, *s0);
  std::vector<int32_t> g2;
  ASSERT_TRUE(a.Grow(g2, 4).ok());
  EXPECT_EQ(a.free_groups(), 0);
}

}  // namespace
}  // namespace apr::cuda
