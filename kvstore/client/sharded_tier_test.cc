// ShardedTier over two in-process pools (LocalTier): KV head h goes to node h % 2, slots
// carry their node, reads and lookups come back in the caller's order, capacity and use
// are summed, a full node refuses with RESOURCE_EXHAUSTED naming it and allocates nothing,
// and errors name the node they came from.
#include "kvstore/client/sharded_tier.h"

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvstore/block_store.h"
#include "kvstore/client/local_tier.h"

namespace apr::kvstore {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kBlockBytes = 256;

std::shared_ptr<LocalTier> Pool(int64_t capacity, int64_t block_bytes = kBlockBytes) {
  auto s = BlockStore::Create({.block_bytes = block_bytes, .capacity_blocks = capacity});
  EXPECT_TRUE(s.ok()) << s.status();
  return std::make_shared<LocalTier>(std::shared_ptr<BlockStore>(*std::move(s)));
}

// A pool that reports a capacity it does not have (Create's check, without the memory).
class ClaimsCapacity : public LocalTier {
 public:
  ClaimsCapacity(std::shared_ptr<BlockStore> store, int64_t capacity)
      : LocalTier(std::move(store)), capacity_(capacity) {}
  absl::StatusOr<BlockStoreStats> NodeStats() override {
    BlockStoreStats s = store().stats();
    s.capacity_blocks = capacity_;
    return s;
  }

 private:
  int64_t capacity_;
};

// The block's bytes: distinct per (layer, head, block).
std::string Bytes(const BlockKey& k) {
  std::string s(kBlockBytes, '\0');
  for (int64_t i = 0; i < kBlockBytes; ++i) {
    s[i] = static_cast<char>(k.layer * 31 + k.kv_head * 7 + k.block * 3 + i);
  }
  return s;
}

struct Fixture {
  explicit Fixture(int64_t capacity0 = 64, int64_t capacity1 = 64)
      : a(Pool(capacity0)), b(Pool(capacity1)) {
    auto t = ShardedTier::Create({a, b});
    EXPECT_TRUE(t.ok()) << t.status();
    tier = *std::move(t);
  }
  // Writes blocks [0, n) of every (layer, head); returns the keys in write order.
  std::vector<BlockKey> WriteAll(uint64_t seq, int layers, int heads, int n,
                                 std::vector<uint32_t>* slots) {
    std::vector<BlockKey> keys;
    for (int l = 0; l < layers; ++l)
      for (int h = 0; h < heads; ++h)
        for (int blk = 0; blk < n; ++blk) keys.push_back({l, h, blk});
    std::vector<std::string> data;
    std::vector<const std::byte*> ptrs;
    for (const BlockKey& k : keys) data.push_back(Bytes(k));
    for (const std::string& d : data) ptrs.push_back(reinterpret_cast<const std::byte*>(d.data()));
    auto s = tier->WriteBlocks(seq, keys, ptrs);
    EXPECT_TRUE(s.ok()) << s.status();
    if (s.ok()) *slots = *s;
    return keys;
  }
  std::shared_ptr<LocalTier> a, b;
  std::unique_ptr<ShardedTier> tier;
};

TEST(ShardedTierTest, KvHeadPicksTheNodeAndSlotsCarryIt) {
  Fixture f;
  ASSERT_TRUE(f.tier->CreateSequence(7, 2, 4).ok());
  std::vector<uint32_t> slots;
  const auto keys = f.WriteAll(7, 2, 4, 3, &slots);
  ASSERT_EQ(slots.size(), keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(ShardedTier::SlotShard(slots[i]), keys[i].kv_head % 2) << i;
  }
  // Heads 0 and 2 on node 0, 1 and 3 on node 1: 2 layers x 2 heads x 3 blocks each.
  EXPECT_EQ(f.a->store().stats().used_blocks, 12);
  EXPECT_EQ(f.b->store().stats().used_blocks, 12);
  auto looked = f.tier->LookupSlots(7, keys);
  ASSERT_TRUE(looked.ok()) << looked.status();
  EXPECT_EQ(*looked, slots);
}

TEST(ShardedTierTest, ReadsComeBackInTheCallersOrder) {
  Fixture f;
  ASSERT_TRUE(f.tier->CreateSequence(7, 2, 2).ok());
  std::vector<uint32_t> slots;
  const auto keys = f.WriteAll(7, 2, 2, 5, &slots);
  // Interleave the nodes and reverse: every destination gets its own block.
  std::vector<uint32_t> want;
  std::vector<BlockKey> want_keys;
  for (size_t i = keys.size(); i-- > 0;) {
    want.push_back(slots[i]);
    want_keys.push_back(keys[i]);
  }
  std::vector<std::string> out(want.size(), std::string(kBlockBytes, '\0'));
  std::vector<std::byte*> dst;
  for (std::string& o : out) dst.push_back(reinterpret_cast<std::byte*>(o.data()));
  auto id = f.tier->StartRead(want, dst);
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(f.tier->WaitRead(*id).ok());
  for (size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i], Bytes(want_keys[i])) << i;
  const TierClientStats st = f.tier->stats();
  EXPECT_EQ(st.reads, 1);  // one StartRead, whatever the shards did
  EXPECT_EQ(st.waits, 1);
  EXPECT_EQ(st.blocks_read, static_cast<int64_t>(want.size()));
  EXPECT_EQ(st.blocks_written, static_cast<int64_t>(keys.size()));
  EXPECT_EQ(f.tier->WaitRead(*id).code(), absl::StatusCode::kInvalidArgument);
}

// Per node: each shard's own traffic, in shard order, adding up to the tier's. Node 1 (odd
// heads) is read three times as much as node 0 here.
TEST(ShardedTierTest, NodeTrafficIsEachShardsOwn) {
  Fixture f;
  ASSERT_TRUE(f.tier->CreateSequence(7, 1, 2).ok());
  std::vector<uint32_t> slots;
  const auto keys = f.WriteAll(7, 1, 2, 4, &slots);  // head 0: slots [0, 4), head 1: [4, 8)
  std::vector<uint32_t> want = {slots[0], slots[4], slots[5], slots[6]};
  std::vector<std::string> out(want.size(), std::string(kBlockBytes, '\0'));
  std::vector<std::byte*> dst;
  for (std::string& o : out) dst.push_back(reinterpret_cast<std::byte*>(o.data()));
  ASSERT_TRUE(f.tier->Read(want, dst).ok());
  const std::vector<NodeTraffic> nodes = f.tier->node_traffic();
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(nodes[0].node, "local pool");
  EXPECT_EQ(nodes[0].stats.blocks_read, 1);
  EXPECT_EQ(nodes[1].stats.blocks_read, 3);
  EXPECT_EQ(nodes[0].stats.bytes_read, kBlockBytes);
  EXPECT_EQ(nodes[1].stats.bytes_read, 3 * kBlockBytes);
  EXPECT_EQ(nodes[0].stats.blocks_written + nodes[1].stats.blocks_written,
            static_cast<int64_t>(keys.size()));
  EXPECT_EQ(f.tier->stats().bytes_read, 4 * kBlockBytes);
}

TEST(ShardedTierTest, CapacityAndUseAreTheNodesSum) {
  Fixture f(64, 32);
  ASSERT_TRUE(f.tier->CreateSequence(1, 1, 2).ok());
  ASSERT_TRUE(f.tier->CreateSequence(2, 1, 2).ok());
  std::vector<uint32_t> slots;
  f.WriteAll(1, 1, 2, 4, &slots);
  auto st = f.tier->NodeStats();
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->capacity_blocks, 96);
  EXPECT_EQ(st->used_blocks, 8);
  EXPECT_EQ(st->free_blocks, 88);
  EXPECT_EQ(st->sequences, 2);  // every sequence is on both nodes: counted once
  EXPECT_EQ(st->block_bytes, kBlockBytes);
  auto freed = f.tier->FreeSequence(1);
  ASSERT_TRUE(freed.ok()) << freed.status();
  EXPECT_EQ(*freed, 8);
  ASSERT_TRUE(f.tier->FreeSequence(2).ok());
  EXPECT_EQ(f.a->store().stats().sequences + f.b->store().stats().sequences, 0);
}

TEST(ShardedTierTest, AFullNodeIsRefusedNamingItAndAllocatesNothing) {
  Fixture f(64, 4);  // node 1 holds 4 blocks
  ASSERT_TRUE(f.tier->CreateSequence(3, 1, 2).ok());
  std::vector<BlockKey> keys;
  for (int blk = 0; blk < 6; ++blk) keys.push_back({0, 1, blk});  // 6 blocks of head 1
  std::vector<std::string> data(keys.size(), std::string(kBlockBytes, 'x'));
  std::vector<const std::byte*> ptrs;
  for (const auto& d : data) ptrs.push_back(reinterpret_cast<const std::byte*>(d.data()));
  auto s = f.tier->WriteBlocks(3, keys, ptrs);
  ASSERT_EQ(s.status().code(), absl::StatusCode::kResourceExhausted) << s.status();
  EXPECT_THAT(s.status().message(), HasSubstr("KV shard 1 of 2 (local pool (4 blocks"));
  EXPECT_THAT(s.status().message(), HasSubstr("is full"));
  EXPECT_EQ(f.b->store().stats().used_blocks, 0);
  EXPECT_EQ(f.b->store().stats().allocation_failures, 1);
  EXPECT_EQ(f.a->store().stats().used_blocks, 0);
  auto st = f.tier->NodeStats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->used_blocks, 0);
  // The same through AllocateBlocks (the CUDA decoder's path for slots filled later).
  EXPECT_EQ(f.tier->AllocateBlocks(3, keys).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(f.b->store().stats().used_blocks, 0);
}

TEST(ShardedTierTest, AWriteSpanningNodesKeepsTheOtherNodesPartUntilFreed) {
  Fixture f(64, 2);
  ASSERT_TRUE(f.tier->CreateSequence(4, 1, 2).ok());
  std::vector<BlockKey> keys = {{0, 0, 0}, {0, 0, 1}, {0, 1, 0}, {0, 1, 1}, {0, 1, 2}};
  std::vector<std::string> data(keys.size(), std::string(kBlockBytes, 'y'));
  std::vector<const std::byte*> ptrs;
  for (const auto& d : data) ptrs.push_back(reinterpret_cast<const std::byte*>(d.data()));
  EXPECT_EQ(f.tier->WriteBlocks(4, keys, ptrs).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(f.b->store().stats().used_blocks, 0);  // the full node took nothing
  EXPECT_EQ(f.a->store().stats().used_blocks, 2);  // node 0's part is in the sequence...
  ASSERT_TRUE(f.tier->FreeSequence(4).ok());       // ... until the sequence is freed
  EXPECT_EQ(f.a->store().stats().used_blocks, 0);
}

TEST(ShardedTierTest, ErrorsNameTheNode) {
  Fixture f;
  // A sequence already on node 1: the create fails there and is undone on node 0.
  ASSERT_TRUE(f.b->CreateSequence(9, 1, 2).ok());
  absl::Status s = f.tier->CreateSequence(9, 1, 2);
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(s.message(), HasSubstr("KV shard 1 of 2 (local pool"));
  EXPECT_EQ(f.a->store().stats().sequences, 0);
  // A slot beyond node 0's pool, and one naming a node the tier does not have.
  std::string buf(kBlockBytes, '\0');
  std::byte* dst = reinterpret_cast<std::byte*>(buf.data());
  const uint32_t beyond = ShardedTier::Encode(0, 1000);
  auto r = f.tier->StartRead(absl::MakeConstSpan(&beyond, 1), absl::MakeSpan(&dst, 1));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(r.status().message(), HasSubstr("KV shard 0 of 2"));
  const uint32_t stranger = ShardedTier::Encode(5, 0);
  r = f.tier->StartRead(absl::MakeConstSpan(&stranger, 1), absl::MakeSpan(&dst, 1));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(r.status().message(), HasSubstr("names KV shard 5; this tier has 2"));
  // Unknown sequence: NOT_FOUND from the node that was asked.
  auto l = f.tier->LookupSlots(12345, std::vector<BlockKey>{{0, 1, 0}});
  EXPECT_EQ(l.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(l.status().message(), HasSubstr("KV shard 1 of 2"));
}

TEST(ShardedTierTest, FewerKvHeadsThanNodesIsRefused) {
  Fixture f;
  absl::Status s = f.tier->CreateSequence(1, 4, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("1 KV heads cannot be sharded by KV head over 2"));
  EXPECT_EQ(f.a->store().stats().sequences, 0);
}

TEST(ShardedTierTest, CreateChecksTheNodes) {
  EXPECT_EQ(ShardedTier::Create({}).status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<std::shared_ptr<StagingTier>> many(17, Pool(4));
  EXPECT_EQ(ShardedTier::Create(many).status().code(), absl::StatusCode::kInvalidArgument);
  auto mixed = ShardedTier::Create({Pool(4), Pool(4, 512)});
  EXPECT_THAT(mixed.status().message(), HasSubstr("same block size"));
  auto store = BlockStore::Create({.block_bytes = kBlockBytes, .capacity_blocks = 4});
  ASSERT_TRUE(store.ok());
  auto huge = std::make_shared<ClaimsCapacity>(std::shared_ptr<BlockStore>(*std::move(store)),
                                               ShardedTier::kMaxShardCapacity + 1);
  auto big = ShardedTier::Create({Pool(4), huge});
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(big.status().message(), HasSubstr("at most 268435455"));
  // The largest encoded slot is not kNoSlot (0xffffffff).
  EXPECT_NE(ShardedTier::Encode(ShardedTier::kMaxShards - 1,
                                static_cast<uint32_t>(ShardedTier::kMaxShardCapacity - 1)),
            0xffffffffu);
}

TEST(ShardedTierTest, StagingIsRegisteredOnEveryNode) {
  Fixture f;
  std::string buf(1024, '\0');
  EXPECT_TRUE(f.tier->RegisterStaging(buf.data(), buf.size()).ok());
  f.tier->UnregisterStaging(buf.data());
}

}  // namespace
}  // namespace apr::kvstore
