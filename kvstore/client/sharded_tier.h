// One sequence's KV cache spread over N storage nodes (docs/KVSTORE.md "Sharding"): KV head
// h of every layer lives on node h % N, so a decode step's reads, which cover every KV head
// of a layer, split evenly over the nodes and are issued to all of them before any is
// waited for. Capacity is the sum of the nodes'.
//
// Slots: a slot this tier hands out carries its node in the top kShardBits bits and the
// node's own slot below them, so callers keep plain uint32 block tables. A node whose
// capacity needs more bits is refused at Create. The encoded slot is never 0xffffffff
// (kvstore/cuda/gather_blocks.h kNoSlot), as node slots stay below 2^28 - 1.
//
// Thread-safe when the shards are (RemoteTier and LocalTier are).
#ifndef APRUNTIME_KVSTORE_CLIENT_SHARDED_TIER_H_
#define APRUNTIME_KVSTORE_CLIENT_SHARDED_TIER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "kvstore/client/staging_tier.h"

namespace apr::kvstore {

class ShardedTier : public StagingTier {
 public:
  static constexpr int kShardBits = 4;
  static constexpr int kSlotBits = 32 - kShardBits;
  static constexpr int kMaxShards = 1 << kShardBits;
  // Largest capacity of one node, in blocks (2 TiB of 8 KiB blocks).
  static constexpr int64_t kMaxShardCapacity = (int64_t{1} << kSlotBits) - 1;

  // Checks that the shards agree on block_bytes and that each capacity fits kSlotBits
  // (one NodeStats call per shard).
  static absl::StatusOr<std::unique_ptr<ShardedTier>> Create(
      std::vector<std::shared_ptr<StagingTier>> shards);

  int num_shards() const { return static_cast<int>(shards_.size()); }
  StagingTier& shard(int i) const { return *shards_[i]; }
  // The shard that holds KV head `kv_head`, and the parts of an encoded slot.
  int ShardOf(int32_t kv_head) const { return kv_head % num_shards(); }
  static uint32_t Encode(int shard, uint32_t slot) {
    return (static_cast<uint32_t>(shard) << kSlotBits) | slot;
  }
  static int SlotShard(uint32_t slot) { return static_cast<int>(slot >> kSlotBits); }
  static uint32_t ShardSlot(uint32_t slot) { return slot & ((uint32_t{1} << kSlotBits) - 1); }

  int64_t block_bytes() const override { return block_bytes_; }
  std::string description() const override;
  // On every shard (each holds the KV heads it owns of every layer); undone on the others
  // when one fails. Refused when there are fewer KV heads than shards (a node would hold
  // nothing).
  absl::Status CreateSequence(uint64_t seq, int32_t num_layers, int32_t num_kv_heads) override;
  // On every shard, even after one fails; the blocks freed on all of them.
  absl::StatusOr<int64_t> FreeSequence(uint64_t seq) override;
  // Each shard's blocks in one call per shard, the shards in parallel. A shard that fails
  // (its pool full) allocates nothing; what the other shards stored for the same call stays
  // in the sequence (a retry gets the same slots) until FreeSequence.
  absl::StatusOr<std::vector<uint32_t>> WriteBlocks(
      uint64_t seq, absl::Span<const BlockKey> keys,
      absl::Span<const std::byte* const> data) override;
  absl::StatusOr<std::vector<uint32_t>> LookupSlots(uint64_t seq,
                                                    absl::Span<const BlockKey> keys) override;
  absl::StatusOr<std::vector<uint32_t>> AllocateBlocks(uint64_t seq,
                                                       absl::Span<const BlockKey> keys) override;
  // Splits the slots by shard and starts every shard's read before returning.
  absl::StatusOr<ReadId> StartRead(absl::Span<const uint32_t> slots,
                                   absl::Span<std::byte* const> dst) override;
  bool ReadDone(ReadId id) override;
  // Progresses all shards' reads together, then waits for each (its own timeout); the
  // first error, naming its node.
  absl::Status WaitRead(ReadId id) override;
  // Summed over the nodes (capacity, use, counters); `sequences` is the largest node's
  // count, since every sequence exists on every node.
  absl::StatusOr<BlockStoreStats> NodeStats() override;
  // Blocks, bytes, data operations and RPCs summed over the shards; reads and waits are
  // this tier's own (one per StartRead / WaitRead, not one per shard).
  TierClientStats stats() const override;
  // Each shard's, in shard order.
  std::vector<NodeTraffic> node_traffic() const override;
  // On every shard; undone on the others when one fails.
  absl::Status RegisterStaging(void* address, size_t length) override;
  void UnregisterStaging(void* address) override;

 private:
  using ShardReads = std::vector<std::pair<int, ReadId>>;  // (shard, the shard's read)
  // Keys split by shard: for shard s, the keys and their positions in the caller's list.
  struct Split {
    std::vector<std::vector<BlockKey>> keys;
    std::vector<std::vector<size_t>> index;
  };

  ShardedTier(std::vector<std::shared_ptr<StagingTier>> shards, int64_t block_bytes)
      : shards_(std::move(shards)), block_bytes_(block_bytes) {}
  Split SplitKeys(absl::Span<const BlockKey> keys) const;
  // Runs fn(shard) for each listed shard, concurrently when there are several; the
  // statuses in the same order, errors naming their node.
  std::vector<absl::Status> OnShards(const std::vector<int>& which,
                                     const std::function<absl::Status(int)>& fn) const;
  std::vector<int> AllShards() const;
  // Slots for `keys` from `per_shard(shard, its keys)`, merged back into the caller's order.
  absl::StatusOr<std::vector<uint32_t>> SlotsByShard(
      absl::Span<const BlockKey> keys,
      const std::function<absl::StatusOr<std::vector<uint32_t>>(int, const Split&)>& per_shard);
  // `s` with the node it came from.
  absl::Status ShardError(int shard, const absl::Status& s) const;
  absl::Status WaitShards(const ShardReads& reads);

  const std::vector<std::shared_ptr<StagingTier>> shards_;
  const int64_t block_bytes_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<ReadId, ShardReads> reads_ ABSL_GUARDED_BY(mu_);
  ReadId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  TierClientStats own_ ABSL_GUARDED_BY(mu_);  // reads and waits
};

}  // namespace apr::kvstore

#endif  // APRUNTIME_KVSTORE_CLIENT_SHARDED_TIER_H_
