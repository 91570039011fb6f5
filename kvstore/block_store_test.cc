#include "kvstore/block_store.h"

#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvstore/geometry.h"

namespace apr::kvstore {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::unique_ptr<BlockStore> MakeStore(int64_t capacity, int64_t block_bytes = 256) {
  auto s = BlockStore::Create({.block_bytes = block_bytes, .capacity_blocks = capacity});
  EXPECT_TRUE(s.ok()) << s.status();
  return *std::move(s);
}

std::string Pattern(int64_t bytes, char seed) {
  std::string s(bytes, '\0');
  for (int64_t i = 0; i < bytes; ++i) s[i] = static_cast<char>(seed + i * 7);
  return s;
}

TEST(BlockStoreTest, GeometryOfTheArchitecture) {
  EXPECT_EQ(BlockBytes(128, 2), 8192);  // Llama-3.1-8B, bf16
  EXPECT_EQ(BlockBytes(64, 4), 8192);   // apr-tiny, the CPU reference's float32
  EXPECT_EQ(BlocksFor(0), 0);
  EXPECT_EQ(BlocksFor(16), 1);
  EXPECT_EQ(BlocksFor(17), 2);
}

TEST(BlockStoreTest, RejectsBadOptions) {
  EXPECT_EQ(BlockStore::Create({.block_bytes = 0, .capacity_blocks = 4}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BlockStore::Create({.block_bytes = 100, .capacity_blocks = 4}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BlockStore::Create({.block_bytes = 256, .capacity_blocks = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      BlockStore::Create({.block_bytes = 256, .capacity_blocks = int64_t{1} << 33}).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(BlockStoreTest, PoolLayoutIsBasePlusSlotTimesBlockBytes) {
  auto store = MakeStore(4, 512);
  EXPECT_GE(store->region_bytes(), 4u * 512);
  EXPECT_EQ(store->slot_data(3), store->base() + 3 * 512);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(store->base()) % 4096, 0u);
}

TEST(BlockStoreTest, SequenceLifecycleFreesEveryBlock) {
  auto store = MakeStore(16);
  ASSERT_TRUE(store->CreateSequence(7, 2, 2).ok());
  EXPECT_EQ(store->CreateSequence(7, 2, 2).code(), absl::StatusCode::kAlreadyExists);
  std::vector<BlockKey> keys;
  for (int32_t l = 0; l < 2; ++l)
    for (int32_t h = 0; h < 2; ++h)
      for (int64_t b = 0; b < 3; ++b) keys.push_back({l, h, b});
  auto slots = store->AllocateBlocks(7, keys);
  ASSERT_TRUE(slots.ok()) << slots.status();
  EXPECT_EQ(slots->size(), 12u);
  BlockStoreStats st = store->stats();
  EXPECT_EQ(st.used_blocks, 12);
  EXPECT_EQ(st.free_blocks, 4);
  EXPECT_EQ(st.sequences, 1);
  EXPECT_EQ(st.used_bytes(), 12 * 256);
  EXPECT_EQ(st.capacity_bytes(), 16 * 256);

  auto freed = store->FreeSequence(7);
  ASSERT_TRUE(freed.ok());
  EXPECT_EQ(*freed, 12);
  st = store->stats();
  EXPECT_EQ(st.used_blocks, 0);
  EXPECT_EQ(st.free_blocks, 16);
  EXPECT_EQ(st.sequences, 0);
  EXPECT_EQ(st.blocks_allocated_total, 12);
  EXPECT_EQ(st.blocks_freed_total, 12);
  EXPECT_EQ(store->FreeSequence(7).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->AllocateBlocks(7, keys).status().code(), absl::StatusCode::kNotFound);
}

TEST(BlockStoreTest, BlocksAreAppendedInOrderAndRetriesReturnTheSameSlot) {
  auto store = MakeStore(16);
  ASSERT_TRUE(store->CreateSequence(1, 1, 1).ok());
  auto a = store->AllocateBlocks(1, {{0, 0, 0}, {0, 0, 1}});
  ASSERT_TRUE(a.ok());
  auto again = store->AllocateBlocks(1, {{0, 0, 1}, {0, 0, 2}});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)[0], (*a)[1]);
  EXPECT_EQ(store->stats().used_blocks, 3);
  auto gap = store->AllocateBlocks(1, {{0, 0, 5}});
  EXPECT_EQ(gap.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(gap.status().message(), HasSubstr("appended in order"));
  EXPECT_EQ(store->AllocateBlocks(1, {{1, 0, 3}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->AllocateBlocks(1, {{0, -1, 3}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto table = store->BlockTable(1, 0, 0);
  ASSERT_TRUE(table.ok());
  EXPECT_THAT(*table, ElementsAre((*a)[0], (*a)[1], (*again)[1]));
}

TEST(BlockStoreTest, FullPoolIsAClearErrorAndAllocatesNothing) {
  auto store = MakeStore(4);
  ASSERT_TRUE(store->CreateSequence(1, 1, 2).ok());
  ASSERT_TRUE(store->AllocateBlocks(1, {{0, 0, 0}, {0, 0, 1}, {0, 1, 0}}).ok());
  auto full = store->AllocateBlocks(1, {{0, 0, 2}, {0, 1, 1}});
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(full.status().message(), HasSubstr("block pool (4 blocks of 256 bytes) is full"));
  EXPECT_THAT(full.status().message(), HasSubstr("capacity of 4 blocks"));
  BlockStoreStats st = store->stats();
  EXPECT_EQ(st.used_blocks, 3);
  EXPECT_EQ(st.allocation_failures, 1);
  auto table = store->BlockTable(1, 0, 0);
  ASSERT_TRUE(table.ok());
  EXPECT_EQ(table->size(), 2u) << "a refused request leaves the tables alone";
  // After freeing, the room is back.
  ASSERT_TRUE(store->FreeSequence(1).ok());
  ASSERT_TRUE(store->CreateSequence(2, 1, 1).ok());
  EXPECT_TRUE(store->AllocateBlocks(2, {{0, 0, 0}, {0, 0, 1}, {0, 0, 2}, {0, 0, 3}}).ok());
}

// A sequence freed and allocated again with the same keys gets the same slots, although
// the free goes table by table and the allocation block by block.
TEST(BlockStoreTest, FreedSlotsComeBackInTheFreshOrder) {
  auto store = MakeStore(16);
  std::vector<BlockKey> keys;
  for (int blk = 0; blk < 3; ++blk)
    for (int l = 0; l < 2; ++l)
      for (int g = 0; g < 2; ++g) keys.push_back({l, g, blk});
  ASSERT_TRUE(store->CreateSequence(1, 2, 2).ok());
  auto first = store->AllocateBlocks(1, keys);
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(store->FreeSequence(1).ok());
  ASSERT_TRUE(store->CreateSequence(2, 2, 2).ok());
  auto second = store->AllocateBlocks(2, keys);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, *first);
}

TEST(BlockStoreTest, WriteThenReadAndLookup) {
  auto store = MakeStore(8);
  ASSERT_TRUE(store->CreateSequence(3, 2, 1).ok());
  const std::vector<BlockKey> keys = {{0, 0, 0}, {1, 0, 0}, {0, 0, 1}};
  const std::string data = Pattern(3 * 256, 'a');
  auto slots = store->WriteBlocks(3, keys, data);
  ASSERT_TRUE(slots.ok()) << slots.status();
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(std::memcmp(store->slot_data((*slots)[i]), data.data() + i * 256, 256), 0);
  }
  auto back = store->ReadBlocks(3, {{0, 0, 1}, {0, 0, 0}});
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->substr(0, 256), data.substr(2 * 256, 256));
  EXPECT_EQ(back->substr(256), data.substr(0, 256));
  auto looked = store->LookupSlots(3, keys);
  ASSERT_TRUE(looked.ok());
  EXPECT_EQ(*looked, *slots);
  auto missing = store->LookupSlots(3, {{1, 0, 1}});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("sequence 3 layer 1 KV head 0 block 1"));
  EXPECT_EQ(store->WriteBlocks(3, keys, "short").status().code(),
            absl::StatusCode::kInvalidArgument);
  BlockStoreStats st = store->stats();
  EXPECT_EQ(st.blocks_written_inline, 3);
  EXPECT_EQ(st.blocks_read_inline, 2);
}

}  // namespace
}  // namespace apr::kvstore
