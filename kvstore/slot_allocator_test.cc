#include "kvstore/slot_allocator.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace apr::kvstore {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(SlotAllocatorTest, FreshPoolHandsOutSlotsInOrder) {
  SlotAllocator a(8, "test pool");
  auto s = a.Allocate(3);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_THAT(*s, ElementsAre(0, 1, 2));
  EXPECT_EQ(a.used(), 3u);
  EXPECT_EQ(a.available(), 5u);
  EXPECT_TRUE(a.allocated(2));
  EXPECT_FALSE(a.allocated(3));
}

TEST(SlotAllocatorTest, FullPoolIsResourceExhaustedNamingTheCapacity) {
  SlotAllocator a(4, "test pool");
  ASSERT_TRUE(a.Allocate(3).ok());
  auto s = a.Allocate(2);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.status().message(), HasSubstr("test pool is full"));
  EXPECT_THAT(s.status().message(), HasSubstr("capacity of 4 blocks"));
  EXPECT_THAT(s.status().message(), HasSubstr("2 blocks requested"));
  EXPECT_EQ(a.used(), 3u) << "a refused request allocates nothing";
  EXPECT_TRUE(a.Allocate(1).ok());
}

TEST(SlotAllocatorTest, FreedSlotsAreReused) {
  SlotAllocator a(4, "test pool");
  auto s = a.Allocate(4);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(a.Free({1, 3}).ok());
  EXPECT_EQ(a.available(), 2u);
  auto again = a.Allocate(2);
  ASSERT_TRUE(again.ok());
  EXPECT_THAT(*again, ElementsAre(1, 3));
}

TEST(SlotAllocatorTest, BadFreesAreRejectedAndChangeNothing) {
  SlotAllocator a(4, "test pool");
  ASSERT_TRUE(a.Allocate(2).ok());  // 0, 1
  EXPECT_EQ(a.Free({0, 7}).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(a.Free({0, 2}).code(), absl::StatusCode::kFailedPrecondition);  // 2 not allocated
  EXPECT_EQ(a.Free({1, 1}).code(), absl::StatusCode::kFailedPrecondition);  // twice
  EXPECT_EQ(a.used(), 2u);
  EXPECT_TRUE(a.allocated(0));
  EXPECT_TRUE(a.allocated(1));
  EXPECT_TRUE(a.Free({0, 1}).ok());
  EXPECT_EQ(a.used(), 0u);
}

TEST(SlotAllocatorTest, ZeroAndNegativeRequests) {
  SlotAllocator a(2, "test pool");
  auto z = a.Allocate(0);
  ASSERT_TRUE(z.ok());
  EXPECT_TRUE(z->empty());
  EXPECT_EQ(a.Allocate(-1).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace apr::kvstore
