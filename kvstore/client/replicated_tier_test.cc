// ReplicatedTier over in-process pools (LocalTier), each behind a switch that makes every
// call fail with UNAVAILABLE, as a killed storage node's client does: reads before and
// after losing either replica return the bytes written, a read in flight on the lost
// replica is re-issued to the survivor, writes after the loss succeed, losing both fails
// naming both, other errors are not losses, and the replicas' slots may differ; Restore
// copies every block from the survivor into a fresh replica, which then serves alone.
#include "kvstore/client/replicated_tier.h"

#include <atomic>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvstore/block_store.h"
#include "kvstore/client/local_tier.h"
#include "kvstore/client/sharded_tier.h"

namespace apr::kvstore {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kBlockBytes = 256;

std::shared_ptr<LocalTier> Pool(int64_t capacity) {
  auto s = BlockStore::Create({.block_bytes = kBlockBytes, .capacity_blocks = capacity});
  EXPECT_TRUE(s.ok()) << s.status();
  return std::make_shared<LocalTier>(std::shared_ptr<BlockStore>(*std::move(s)));
}

// A tier that fails every call with UNAVAILABLE once Kill() is called.
class Faulty : public StagingTier {
 public:
  Faulty(std::shared_ptr<StagingTier> inner, std::string name)
      : inner_(std::move(inner)), name_(std::move(name)) {}
  void Kill() { dead_ = true; }
  StagingTier& inner() { return *inner_; }

  int64_t block_bytes() const override { return inner_->block_bytes(); }
  std::string description() const override { return "storage node " + name_; }
  absl::Status CreateSequence(uint64_t seq, int32_t l, int32_t h) override {
    if (dead_) return Gone();
    return inner_->CreateSequence(seq, l, h);
  }
  absl::StatusOr<int64_t> FreeSequence(uint64_t seq) override {
    if (dead_) return Gone();
    return inner_->FreeSequence(seq);
  }
  absl::StatusOr<std::vector<uint32_t>> WriteBlocks(
      uint64_t seq, absl::Span<const BlockKey> keys,
      absl::Span<const std::byte* const> data) override {
    if (dead_) return Gone();
    return inner_->WriteBlocks(seq, keys, data);
  }
  absl::StatusOr<std::vector<uint32_t>> LookupSlots(uint64_t seq,
                                                    absl::Span<const BlockKey> keys) override {
    if (dead_) return Gone();
    return inner_->LookupSlots(seq, keys);
  }
  absl::StatusOr<std::vector<uint32_t>> AllocateBlocks(uint64_t seq,
                                                       absl::Span<const BlockKey> keys) override {
    if (dead_) return Gone();
    return inner_->AllocateBlocks(seq, keys);
  }
  absl::StatusOr<ReadId> StartRead(absl::Span<const uint32_t> slots,
                                   absl::Span<std::byte* const> dst) override {
    if (dead_) return Gone();
    return inner_->StartRead(slots, dst);
  }
  bool ReadDone(ReadId id) override { return dead_ || inner_->ReadDone(id); }
  absl::Status WaitRead(ReadId id) override {
    absl::Status s = inner_->WaitRead(id);
    return dead_ ? Gone() : s;
  }
  absl::StatusOr<BlockStoreStats> NodeStats() override {
    if (dead_) return Gone();
    return inner_->NodeStats();
  }
  TierClientStats stats() const override { return inner_->stats(); }
  absl::Status RegisterStaging(void* a, size_t n) override {
    if (dead_) return Gone();
    registered.insert(a);
    return inner_->RegisterStaging(a, n);
  }
  void UnregisterStaging(void* a) override {
    registered.erase(a);
    inner_->UnregisterStaging(a);
  }
  std::set<void*> registered;  // staging memory registered now

 private:
  absl::Status Gone() const {
    return absl::UnavailableError(absl::StrCat("storage node ", name_, " is unreachable"));
  }
  std::shared_ptr<StagingTier> inner_;
  std::string name_;
  std::atomic<bool> dead_{false};
};

// The block's bytes: distinct per (layer, head, block) and per `round` (rewrites).
std::string Bytes(const BlockKey& k, int round = 0) {
  std::string s(kBlockBytes, '\0');
  for (int64_t i = 0; i < kBlockBytes; ++i) {
    s[i] = static_cast<char>(k.layer * 31 + k.kv_head * 7 + k.block * 3 + round * 11 + i);
  }
  return s;
}

std::vector<BlockKey> Keys(int layers, int heads, int first, int n) {
  std::vector<BlockKey> keys;
  for (int l = 0; l < layers; ++l)
    for (int h = 0; h < heads; ++h)
      for (int b = first; b < first + n; ++b) keys.push_back({l, h, b});
  return keys;
}

struct Fixture {
  explicit Fixture(int64_t capacity0 = 64, int64_t capacity1 = 64)
      : a(Pool(capacity0)),
        b(Pool(capacity1)),
        fa(std::make_shared<Faulty>(a, "kv-a")),
        fb(std::make_shared<Faulty>(b, "kv-b")) {
    auto t = ReplicatedTier::Create(fa, fb);
    EXPECT_TRUE(t.ok()) << t.status();
    tier = *std::move(t);
  }
  Faulty& faulty(int r) { return r == 0 ? *fa : *fb; }
  absl::StatusOr<std::vector<uint32_t>> Write(uint64_t seq, const std::vector<BlockKey>& keys,
                                              int round = 0) {
    std::vector<std::string> data;
    std::vector<const std::byte*> ptrs;
    for (const BlockKey& k : keys) data.push_back(Bytes(k, round));
    for (const std::string& d : data) ptrs.push_back(reinterpret_cast<const std::byte*>(d.data()));
    return tier->WriteBlocks(seq, keys, ptrs);
  }
  // Reads `slots` and checks each against the bytes of `keys`; the read's status.
  absl::Status ReadAndCheck(const std::vector<uint32_t>& slots, const std::vector<BlockKey>& keys,
                            int round = 0) {
    std::vector<std::string> out(slots.size(), std::string(kBlockBytes, '\0'));
    std::vector<std::byte*> dst;
    for (std::string& o : out) dst.push_back(reinterpret_cast<std::byte*>(o.data()));
    absl::Status s = tier->Read(slots, dst);
    if (!s.ok()) return s;
    for (size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i], Bytes(keys[i], round)) << i;
    return absl::OkStatus();
  }
  std::shared_ptr<LocalTier> a, b;
  std::shared_ptr<Faulty> fa, fb;
  std::unique_ptr<ReplicatedTier> tier;
};

class LoseReplica : public ::testing::TestWithParam<int> {};

TEST_P(LoseReplica, ReadsAndWritesGoOnFromTheSurvivor) {
  const int gone = GetParam();
  Fixture f;
  ASSERT_TRUE(f.tier->CreateSequence(7, 2, 2).ok());
  const std::vector<BlockKey> before = Keys(2, 2, 0, 3);
  auto slots = f.Write(7, before);
  ASSERT_TRUE(slots.ok()) << slots.status();
  // Both replicas hold every block.
  EXPECT_EQ(f.a->store().stats().used_blocks, 12);
  EXPECT_EQ(f.b->store().stats().used_blocks, 12);
  ASSERT_TRUE(f.ReadAndCheck(*slots, before).ok());

  f.faulty(gone).Kill();
  absl::Status s = f.ReadAndCheck(*slots, before);
  EXPECT_TRUE(s.ok()) << s;
  const std::vector<BlockKey> after = Keys(2, 2, 3, 2);
  auto more = f.Write(7, after);
  ASSERT_TRUE(more.ok()) << more.status();
  EXPECT_TRUE(f.tier->lost(gone));
  EXPECT_FALSE(f.tier->lost(1 - gone));
  // Every block, old and new, from the survivor; a rewrite of an old block too.
  std::vector<uint32_t> all = *slots;
  all.insert(all.end(), more->begin(), more->end());
  std::vector<BlockKey> all_keys = before;
  all_keys.insert(all_keys.end(), after.begin(), after.end());
  s = f.ReadAndCheck(all, all_keys);
  EXPECT_TRUE(s.ok()) << s;
  auto looked = f.tier->LookupSlots(7, all_keys);
  ASSERT_TRUE(looked.ok()) << looked.status();
  EXPECT_EQ(*looked, all);
  auto rewritten = f.Write(7, before, 1);
  ASSERT_TRUE(rewritten.ok()) << rewritten.status();
  EXPECT_EQ(*rewritten, *slots);
  s = f.ReadAndCheck(*slots, before, 1);
  EXPECT_TRUE(s.ok()) << s;
  // New sequences and stats: the survivor alone.
  EXPECT_TRUE(f.tier->CreateSequence(8, 2, 2).ok());
  auto st = f.tier->NodeStats();
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->used_blocks, 20);
  auto freed = f.tier->FreeSequence(7);
  ASSERT_TRUE(freed.ok()) << freed.status();
  EXPECT_EQ(*freed, 20);
  EXPECT_TRUE(f.tier->FreeSequence(8).ok());
  LocalTier& survivor = gone == 0 ? *f.b : *f.a;
  EXPECT_EQ(survivor.store().stats().used_blocks, 0);
  EXPECT_EQ(survivor.store().stats().sequences, 0);
}

INSTANTIATE_TEST_SUITE_P(EitherReplica, LoseReplica, ::testing::Values(0, 1));

TEST(ReplicatedTierTest, AReadInFlightOnTheLostReplicaIsReissuedToTheSurvivor) {
  Fixture f;
  ASSERT_TRUE(f.tier->CreateSequence(1, 1, 2).ok());
  const std::vector<BlockKey> keys = Keys(1, 2, 0, 4);
  auto slots = f.Write(1, keys);
  ASSERT_TRUE(slots.ok()) << slots.status();
  std::vector<std::string> out(keys.size(), std::string(kBlockBytes, '\0'));
  std::vector<std::byte*> dst;
  for (std::string& o : out) dst.push_back(reinterpret_cast<std::byte*>(o.data()));
  auto id = f.tier->StartRead(*slots, dst);  // on the primary
  ASSERT_TRUE(id.ok()) << id.status();
  const int64_t read_from_b = f.b->stats().blocks_read;
  // The primary is lost before the read is waited for: what it copied does not count.
  f.fa->Kill();
  for (std::string& o : out) o.assign(kBlockBytes, '\0');
  EXPECT_TRUE(f.tier->ReadDone(*id));  // done (failed): WaitRead re-issues it
  absl::Status s = f.tier->WaitRead(*id);
  ASSERT_TRUE(s.ok()) << s;
  for (size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(out[i], Bytes(keys[i])) << i;
  EXPECT_EQ(f.b->stats().blocks_read - read_from_b, static_cast<int64_t>(keys.size()));
  EXPECT_TRUE(f.tier->lost(0));
  const TierClientStats st = f.tier->stats();
  EXPECT_EQ(st.reads, 1);
  EXPECT_EQ(st.waits, 1);
}

TEST(ReplicatedTierTest, BothLostFailsNamingBoth) {
  Fixture f;
  ASSERT_TRUE(f.tier->CreateSequence(1, 1, 2).ok());
  const std::vector<BlockKey> keys = Keys(1, 2, 0, 2);
  auto slots = f.Write(1, keys);
  ASSERT_TRUE(slots.ok());
  f.fa->Kill();
  ASSERT_TRUE(f.Write(1, Keys(1, 2, 2, 1)).ok());  // on kv-b alone
  f.fb->Kill();
  auto w = f.Write(1, Keys(1, 2, 3, 1));
  EXPECT_EQ(w.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(w.status().message(), HasSubstr("both KV replicas are lost"));
  EXPECT_THAT(w.status().message(), HasSubstr("replica 0 (storage node kv-a): storage node kv-a "
                                              "is unreachable"));
  EXPECT_THAT(w.status().message(), HasSubstr("replica 1 (storage node kv-b): storage node kv-b "
                                              "is unreachable"));
  absl::Status r = f.ReadAndCheck(*slots, keys);
  EXPECT_EQ(r.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(r.message(), HasSubstr("kv-a"));
  EXPECT_THAT(r.message(), HasSubstr("kv-b"));
  EXPECT_EQ(f.tier->CreateSequence(2, 1, 2).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(f.tier->NodeStats().status().code(), absl::StatusCode::kUnavailable);
}

TEST(ReplicatedTierTest, TheReplicasSlotsMayDiffer) {
  Fixture f;
  // Another client's blocks on kv-b only: the same block lands in other slots there.
  ASSERT_TRUE(f.b->CreateSequence(99, 1, 1).ok());
  std::string junk(kBlockBytes, 'j');
  const std::byte* jp = reinterpret_cast<const std::byte*>(junk.data());
  ASSERT_TRUE(f.b->WriteBlocks(99, std::vector<BlockKey>{{0, 0, 0}}, {jp}).ok());
  ASSERT_TRUE(f.tier->CreateSequence(1, 1, 2).ok());
  const std::vector<BlockKey> keys = Keys(1, 2, 0, 3);
  auto slots = f.Write(1, keys);
  ASSERT_TRUE(slots.ok());
  auto on_a = f.a->LookupSlots(1, keys);
  auto on_b = f.b->LookupSlots(1, keys);
  ASSERT_TRUE(on_a.ok() && on_b.ok());
  EXPECT_NE(*on_a, *on_b);
  f.fa->Kill();
  absl::Status s = f.ReadAndCheck(*slots, keys);
  EXPECT_TRUE(s.ok()) << s;
}

TEST(ReplicatedTierTest, OtherErrorsAreNotLosses) {
  Fixture f(64, 4);  // kv-b holds 4 blocks
  ASSERT_TRUE(f.tier->CreateSequence(3, 1, 2).ok());
  auto w = f.Write(3, Keys(1, 2, 0, 3));  // 6 blocks
  EXPECT_EQ(w.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(w.status().message(), HasSubstr("KV replica 1 of 2 (storage node kv-b)"));
  EXPECT_FALSE(f.tier->lost(1));
  // Capacity is the smaller replica's.
  auto st = f.tier->NodeStats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->capacity_blocks, 4);
  // A sequence that exists on one replica: refused, and undone on the other.
  ASSERT_TRUE(f.b->CreateSequence(9, 1, 2).ok());
  absl::Status c = f.tier->CreateSequence(9, 1, 2);
  EXPECT_EQ(c.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(f.a->store().stats().sequences, 1);  // sequence 3 only
  EXPECT_FALSE(f.tier->lost(0) || f.tier->lost(1));
  // Slots this tier never handed out.
  std::string buf(kBlockBytes, '\0');
  std::byte* dst = reinterpret_cast<std::byte*>(buf.data());
  const uint32_t stranger = 12345;
  auto r = f.tier->StartRead(absl::MakeConstSpan(&stranger, 1), absl::MakeSpan(&dst, 1));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(f.tier->LookupSlots(77, Keys(1, 1, 0, 1)).status().code(), absl::StatusCode::kNotFound);
}

TEST(ReplicatedTierTest, ReplicasMayBeShardedSets) {
  auto a0 = std::make_shared<Faulty>(Pool(64), "kv-a0");
  auto a1 = std::make_shared<Faulty>(Pool(64), "kv-a1");
  auto b0 = std::make_shared<Faulty>(Pool(64), "kv-b0");
  auto b1 = std::make_shared<Faulty>(Pool(64), "kv-b1");
  auto ra = ShardedTier::Create({a0, a1});
  auto rb = ShardedTier::Create({b0, b1});
  ASSERT_TRUE(ra.ok() && rb.ok());
  auto t = ReplicatedTier::Create(std::shared_ptr<StagingTier>(*std::move(ra)),
                                  std::shared_ptr<StagingTier>(*std::move(rb)));
  ASSERT_TRUE(t.ok()) << t.status();
  ReplicatedTier& tier = **t;
  ASSERT_TRUE(tier.CreateSequence(5, 2, 2).ok());
  const std::vector<BlockKey> keys = Keys(2, 2, 0, 3);
  std::vector<std::string> data;
  std::vector<const std::byte*> ptrs;
  for (const BlockKey& k : keys) data.push_back(Bytes(k));
  for (const std::string& d : data) ptrs.push_back(reinterpret_cast<const std::byte*>(d.data()));
  auto slots = tier.WriteBlocks(5, keys, ptrs);
  ASSERT_TRUE(slots.ok()) << slots.status();
  a1->Kill();  // one shard of the primary: the primary is lost as a whole
  std::vector<std::string> out(keys.size(), std::string(kBlockBytes, '\0'));
  std::vector<std::byte*> dst;
  for (std::string& o : out) dst.push_back(reinterpret_cast<std::byte*>(o.data()));
  absl::Status s = tier.Read(*slots, dst);
  ASSERT_TRUE(s.ok()) << s;
  for (size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(out[i], Bytes(keys[i])) << i;
  EXPECT_TRUE(tier.lost(0));
  EXPECT_FALSE(tier.lost(1));
  std::string buf(64, '\0');
  EXPECT_TRUE(tier.RegisterStaging(buf.data(), buf.size()).ok());
  tier.UnregisterStaging(buf.data());
}

TEST(ReplicatedTierTest, CreateChecksTheBlockSize) {
  auto s = BlockStore::Create({.block_bytes = 512, .capacity_blocks = 4});
  ASSERT_TRUE(s.ok());
  auto other = std::make_shared<LocalTier>(std::shared_ptr<BlockStore>(*std::move(s)));
  auto t = ReplicatedTier::Create(Pool(4), other);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), HasSubstr("same block size"));
}

// Every block of every sequence, read through the tier, against its bytes; `round` per key.
void ExpectAllBlocks(ReplicatedTier& tier, uint64_t seq, const std::vector<BlockKey>& keys,
                     const std::vector<int>& rounds) {
  auto slots = tier.LookupSlots(seq, keys);
  ASSERT_TRUE(slots.ok()) << slots.status();
  std::vector<std::string> out(keys.size(), std::string(kBlockBytes, '\0'));
  std::vector<std::byte*> dst;
  for (std::string& o : out) dst.push_back(reinterpret_cast<std::byte*>(o.data()));
  absl::Status s = tier.Read(*slots, dst);
  ASSERT_TRUE(s.ok()) << s;
  for (size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(out[i], Bytes(keys[i], rounds[i])) << i;
}

class RestoreReplica : public ::testing::TestWithParam<int> {};

TEST_P(RestoreReplica, TheFreshReplicaHoldsEveryBlockAndServesWhenTheOtherIsLost) {
  const int gone = GetParam();
  Fixture f;
  std::string staging(4096, '\0');
  ASSERT_TRUE(f.tier->RegisterStaging(staging.data(), staging.size()).ok());
  ASSERT_TRUE(f.tier->CreateSequence(7, 2, 2).ok());
  ASSERT_TRUE(f.tier->CreateSequence(8, 1, 2).ok());
  std::vector<BlockKey> keys7 = Keys(2, 2, 0, 3);
  const std::vector<BlockKey> keys8 = Keys(1, 2, 0, 2);
  ASSERT_TRUE(f.Write(7, keys7).ok());
  ASSERT_TRUE(f.Write(8, keys8).ok());
  f.faulty(gone).Kill();
  // After the loss, on the survivor alone: new blocks, a rewrite, a new sequence, a free.
  const std::vector<BlockKey> more = Keys(2, 2, 3, 1);
  ASSERT_TRUE(f.Write(7, more).ok());
  ASSERT_TRUE(f.Write(7, {keys7[0]}, 1).ok());
  ASSERT_TRUE(f.tier->CreateSequence(9, 1, 1).ok());
  const std::vector<BlockKey> keys9 = Keys(1, 1, 0, 2);
  ASSERT_TRUE(f.Write(9, keys9).ok());
  ASSERT_TRUE(f.tier->FreeSequence(8).ok());
  keys7.insert(keys7.end(), more.begin(), more.end());
  std::vector<int> rounds7(keys7.size(), 0);
  rounds7[0] = 1;

  auto fresh = std::make_shared<Faulty>(Pool(64), "kv-fresh");
  absl::Status s = f.tier->Restore(gone, fresh);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_FALSE(f.tier->lost(gone));
  LocalTier& survivor = gone == 0 ? *f.b : *f.a;
  EXPECT_EQ(static_cast<LocalTier&>(fresh->inner()).store().stats().used_blocks,
            survivor.store().stats().used_blocks);
  EXPECT_EQ(static_cast<LocalTier&>(fresh->inner()).store().stats().sequences, 2);
  EXPECT_EQ(fresh->registered, std::set<void*>{staging.data()});
  EXPECT_TRUE(f.faulty(gone).registered.empty());

  // The survivor lost too: the restored replica serves every block, old and new.
  f.faulty(1 - gone).Kill();
  ExpectAllBlocks(*f.tier, 7, keys7, rounds7);
  ExpectAllBlocks(*f.tier, 9, keys9, {0, 0});
  ASSERT_TRUE(f.Write(9, Keys(1, 1, 2, 1)).ok());
  EXPECT_TRUE(f.tier->lost(1 - gone));  // found by the write (reads went to the primary)
  // The replaced replica's traffic still counts, under its node's name.
  int64_t written = 0;
  std::set<std::string> nodes;
  for (const NodeTraffic& t : f.tier->node_traffic()) {
    nodes.insert(t.node);
    written += t.stats.bytes_written;
  }
  EXPECT_EQ(nodes, (std::set<std::string>{"storage node kv-a", "storage node kv-b",
                                          "storage node kv-fresh"}));
  EXPECT_EQ(written, f.tier->stats().bytes_written);
  f.tier->UnregisterStaging(staging.data());
  EXPECT_TRUE(fresh->registered.empty());
}

INSTANTIATE_TEST_SUITE_P(EitherReplica, RestoreReplica, ::testing::Values(0, 1));

TEST(ReplicatedTierTest, RestoreRefusesWhatItCannotDoAndLeavesNothingBehind) {
  Fixture f;
  ASSERT_TRUE(f.tier->CreateSequence(1, 1, 2).ok());
  const std::vector<BlockKey> keys = Keys(1, 2, 0, 4);  // 8 blocks
  ASSERT_TRUE(f.Write(1, keys).ok());
  // Not lost.
  absl::Status s = f.tier->Restore(0, Pool(64));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("KV replica 0 of 2 (storage node kv-a) is not lost"));
  f.fa->Kill();
  ExpectAllBlocks(*f.tier, 1, keys, std::vector<int>(keys.size(), 0));  // finds kv-a lost
  ASSERT_TRUE(f.tier->lost(0));
  // Another block size.
  auto big = BlockStore::Create({.block_bytes = 2 * kBlockBytes, .capacity_blocks = 64});
  ASSERT_TRUE(big.ok());
  s = f.tier->Restore(0, std::make_shared<LocalTier>(std::shared_ptr<BlockStore>(*std::move(big))));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  // A fresh replica too small: the copy fails, the fresh pool is emptied, replica 0 stays
  // lost and replica 1 serves on.
  std::shared_ptr<LocalTier> small = Pool(5);
  s = f.tier->Restore(0, small);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("restoring KV replica 0 onto local pool"));
  EXPECT_EQ(small->store().stats().sequences, 0);
  EXPECT_EQ(small->store().stats().used_blocks, 0);
  EXPECT_TRUE(f.tier->lost(0));
  ExpectAllBlocks(*f.tier, 1, keys, std::vector<int>(keys.size(), 0));
  // Both lost: nothing to copy from.
  f.fb->Kill();
  EXPECT_FALSE(f.Write(1, Keys(1, 2, 4, 1)).ok());
  s = f.tier->Restore(0, Pool(64));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("both KV replicas are lost"));
}

TEST(ReplicatedTierTest, RestoreOntoANodeWithStaleCopiesReplacesThem) {
  Fixture f;
  ASSERT_TRUE(f.tier->CreateSequence(1, 1, 2).ok());
  const std::vector<BlockKey> keys = Keys(1, 2, 0, 3);
  ASSERT_TRUE(f.Write(1, keys).ok());
  f.fa->Kill();                           // kv-a's pool keeps sequence 1 as it was
  ASSERT_TRUE(f.Write(1, keys, 1).ok());  // rewritten on kv-b only
  // kv-a answers again with its old blocks (a node that was unreachable, not restarted).
  auto back = std::make_shared<Faulty>(f.a, "kv-a");
  absl::Status s = f.tier->Restore(0, back);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(f.a->store().stats().used_blocks, 6);
  f.fb->Kill();
  ExpectAllBlocks(*f.tier, 1, keys, std::vector<int>(keys.size(), 1));
}

TEST(ReplicatedTierTest, AReadIssuedToTheLostReplicaBeforeRestoreIsReissued) {
  Fixture f;
  ASSERT_TRUE(f.tier->CreateSequence(1, 1, 2).ok());
  const std::vector<BlockKey> keys = Keys(1, 2, 0, 4);
  auto slots = f.Write(1, keys);
  ASSERT_TRUE(slots.ok());
  std::vector<std::string> out(keys.size(), std::string(kBlockBytes, '\0'));
  std::vector<std::byte*> dst;
  for (std::string& o : out) dst.push_back(reinterpret_cast<std::byte*>(o.data()));
  auto id = f.tier->StartRead(*slots, dst);  // on kv-a
  ASSERT_TRUE(id.ok());
  f.fa->Kill();
  f.tier->MarkLost(0, absl::UnavailableError("kv-a stopped answering"));
  auto fresh = std::make_shared<Faulty>(Pool(64), "kv-fresh");
  ASSERT_TRUE(f.tier->Restore(0, fresh).ok());
  for (std::string& o : out) o.assign(kBlockBytes, '\0');
  // The read failed on the old kv-a: re-issued (to the restored primary), and the restored
  // replica is not marked lost for the old one's failure.
  absl::Status s = f.tier->WaitRead(*id);
  ASSERT_TRUE(s.ok()) << s;
  for (size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(out[i], Bytes(keys[i])) << i;
  EXPECT_FALSE(f.tier->lost(0));
}

}  // namespace
}  // namespace apr::kvstore
