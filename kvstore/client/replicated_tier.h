// Two copies of every block (docs/KVSTORE.md "Replication"): a StagingTier over two
// replicas, each a storage node (RemoteTier) or a sharded set of nodes (ShardedTier), so
// that losing a node costs no re-prefill. Writes, creates, frees and allocations go to both
// replicas in parallel; reads go to one, the primary (replica 0) while it is alive. A
// replica whose call fails with UNAVAILABLE (its node is gone) is marked lost and every
// later call is served by the survivor, so callers see no error; a read already issued to
// it is re-issued to the survivor inside WaitRead. Only when both are lost do calls fail,
// naming both. Restore puts a lost replica back: a fresh tier (the node restarted, or a
// spare) gets a copy of every block from the survivor, and both serve again.
//
// Slots: the replicas are separate pools that other workers share, so the same block gets
// different slots on each (allocation order interleaves with other clients'). The tier
// therefore hands out slots of its own and maps each to the block's slot on each replica;
// reads translate them. A sequence's slots are released at FreeSequence.
//
// Thread-safe when the replicas are (RemoteTier, ShardedTier and LocalTier are).
#ifndef APRUNTIME_KVSTORE_CLIENT_REPLICATED_TIER_H_
#define APRUNTIME_KVSTORE_CLIENT_REPLICATED_TIER_H_

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/synchronization/mutex.h"
#include "kvstore/client/staging_tier.h"

namespace apr::kvstore {

class ReplicatedTier : public StagingTier {
 public:
  static constexpr int kReplicas = 2;
  // Checks that the replicas agree on block_bytes.
  static absl::StatusOr<std::unique_ptr<ReplicatedTier>> Create(
      std::shared_ptr<StagingTier> primary, std::shared_ptr<StagingTier> secondary);

  bool lost(int r) const;
  // Marks replica `r` lost (it failed with UNAVAILABLE, or its owner found a node of it
  // gone or restarted) and logs it once; later calls use the other replica only.
  void MarkLost(int r, const absl::Status& why);
  // What calls fail with once both are lost: UNAVAILABLE naming both and why.
  absl::Status BothLost() const;
  // Re-replication: replaces lost replica `r` by `fresh` (empty, or holding stale copies of
  // this tier's sequences, which are freed first), copies every block of every sequence
  // into it from the other replica, re-registers the staging memory, and serves from both
  // again. Every other call waits meanwhile (a pause of the copy's length: the bytes
  // cross the network twice). Fails, leaving `r` lost and `fresh` holding nothing of this
  // tier, when `r` is not lost, the other replica is lost too, or a copy fails.
  absl::Status Restore(int r, std::shared_ptr<StagingTier> fresh);

  int64_t block_bytes() const override { return block_bytes_; }
  std::string description() const override;
  // On both; undone on the other when one fails with anything but UNAVAILABLE.
  absl::Status CreateSequence(uint64_t seq, int32_t num_layers, int32_t num_kv_heads) override;
  // On both; the blocks freed, counted once. The sequence's slots are released.
  absl::StatusOr<int64_t> FreeSequence(uint64_t seq) override;
  // On both in parallel. A replica that fails otherwise than UNAVAILABLE fails the call;
  // what the other stored stays in the sequence (a retry gets the same slots).
  absl::StatusOr<std::vector<uint32_t>> WriteBlocks(
      uint64_t seq, absl::Span<const BlockKey> keys,
      absl::Span<const std::byte* const> data) override;
  // From this tier's own tables (no call to the replicas).
  absl::StatusOr<std::vector<uint32_t>> LookupSlots(uint64_t seq,
                                                    absl::Span<const BlockKey> keys) override;
  absl::StatusOr<std::vector<uint32_t>> AllocateBlocks(uint64_t seq,
                                                       absl::Span<const BlockKey> keys) override;
  // Reads from the first live replica (the primary first).
  absl::StatusOr<ReadId> StartRead(absl::Span<const uint32_t> slots,
                                   absl::Span<std::byte* const> dst) override;
  // The replica's ReadDone: a read that failed is done, and re-issued by WaitRead.
  bool ReadDone(ReadId id) override;
  // Waits for the replica's read; when that replica is lost meanwhile, reads the blocks
  // again from the survivor.
  absl::Status WaitRead(ReadId id) override;
  // Capacity and free blocks are the smaller live replica's (the tier is full when either
  // is); use and the other counters the larger's.
  absl::StatusOr<BlockStoreStats> NodeStats() override;
  // Blocks, bytes, data operations and RPCs summed over the replicas (what was moved);
  // reads and waits are this tier's own.
  TierClientStats stats() const override;
  // Both replicas', primary first.
  std::vector<NodeTraffic> node_traffic() const override;
  // On both live replicas; undone on the first when the second fails otherwise.
  absl::Status RegisterStaging(void* address, size_t length) override;
  void UnregisterStaging(void* address) override;

 private:
  static constexpr uint32_t kNone = 0xffffffffu;  // no slot on that replica (kNoSlot too)
  using Slots = std::array<uint32_t, kReplicas>;  // a block's slot on each replica
  struct Pending {
    int replica = 0;
    std::shared_ptr<StagingTier> tier;  // that replica when issued (Restore may replace it)
    ReadId id = 0;                      // the tier's
    std::vector<uint32_t> slots;        // this tier's, for a re-issue
    std::vector<std::byte*> dst;
  };

  // One sequence's blocks as Restore copies them: its shape and (key, this tier's slot).
  struct SequenceBlocks {
    uint64_t seq = 0;
    int32_t num_layers = 0, num_kv_heads = 0;
    std::vector<std::pair<BlockKey, uint32_t>> blocks;
  };
  // This tier's slot -> the block's slot in the restored replica.
  using RestoredSlots = std::vector<std::pair<uint32_t, uint32_t>>;

  ReplicatedTier(std::shared_ptr<StagingTier> a, std::shared_ptr<StagingTier> b,
                 int64_t block_bytes)
      : replicas_{std::move(a), std::move(b)}, block_bytes_(block_bytes) {}
  std::vector<int> Live() const;
  // The unlocked bodies of the public calls of the same name, for callers that hold
  // ops_mu_ already (absl::Mutex is not re-entrant).
  void MarkLostHeld(int r, const absl::Status& why) ABSL_SHARED_LOCKS_REQUIRED(ops_mu_);
  absl::Status BothLostHeld() const ABSL_SHARED_LOCKS_REQUIRED(ops_mu_);
  // Marks the replica a read was issued to lost, unless Restore has replaced it since.
  void MarkReadLost(const Pending& read, const absl::Status& why)
      ABSL_SHARED_LOCKS_REQUIRED(ops_mu_);
  // Restore's steps: the sequences to copy; one sequence's blocks from `source` into
  // `fresh` (appending to `out`); the staging registrations moved to `fresh`.
  std::vector<SequenceBlocks> SnapshotSequences() const;
  absl::Status CopySequence(int source, const SequenceBlocks& seq, StagingTier& fresh,
                            RestoredSlots* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(ops_mu_);
  absl::Status MoveStaging(StagingTier& old_replica, StagingTier& fresh);
  // What a call on the live replicas came to: the replicas it succeeded on, and the first
  // failure that is not a loss (naming its replica), or, when no replica succeeded and
  // none failed otherwise, the both-lost error.
  struct Outcome {
    std::vector<int> done;
    absl::Status error;
  };
  // Runs fn(r) on each live replica, the second beside the first; marks the ones that
  // fail with UNAVAILABLE lost.
  Outcome OnLive(const std::function<absl::Status(int)>& fn);
  absl::Status ReplicaError(int r, const absl::Status& s) const;
  // Writes or allocations through `per_replica`, recorded in the sequence's table.
  absl::StatusOr<std::vector<uint32_t>> Append(
      uint64_t seq, absl::Span<const BlockKey> keys,
      const std::function<absl::StatusOr<std::vector<uint32_t>>(int)>& per_replica);
  // `slots` as replica `r`'s slots.
  absl::StatusOr<std::vector<uint32_t>> Translate(int r, absl::Span<const uint32_t> slots);
  // Starts `read` on a live replica, the primary first; fills read->replica and read->id.
  absl::Status Issue(Pending* read);

  // Every call that reaches the replicas holds ops_mu_ shared; Restore holds it exclusive
  // while it copies and swaps a replica. Taken before mu_.
  mutable absl::Mutex ops_mu_;
  std::array<std::shared_ptr<StagingTier>, kReplicas> replicas_ ABSL_GUARDED_BY(ops_mu_);
  const int64_t block_bytes_;
  mutable absl::Mutex mu_;
  std::array<std::string, kReplicas> lost_ ABSL_GUARDED_BY(mu_);  // why; empty: alive
  // This tier's slot -> the block's slots on the replicas; freed ones are reused.
  std::vector<Slots> slots_ ABSL_GUARDED_BY(mu_);
  std::vector<uint32_t> free_ ABSL_GUARDED_BY(mu_);
  // Per sequence: block (layer, KV head, block) -> this tier's slot.
  struct KeyHash {
    size_t operator()(const BlockKey& k) const { return absl::HashOf(k.layer, k.kv_head, k.block); }
  };
  struct KeyEq {
    bool operator()(const BlockKey& a, const BlockKey& b) const {
      return a.layer == b.layer && a.kv_head == b.kv_head && a.block == b.block;
    }
  };
  using Table = absl::flat_hash_map<BlockKey, uint32_t, KeyHash, KeyEq>;
  absl::flat_hash_map<uint64_t, Table> tables_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<ReadId, Pending> reads_ ABSL_GUARDED_BY(mu_);
  ReadId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  TierClientStats own_ ABSL_GUARDED_BY(mu_);  // reads and waits
  // Each sequence's (layers, KV heads), for Restore's CreateSequence.
  absl::flat_hash_map<uint64_t, std::pair<int32_t, int32_t>> shapes_ ABSL_GUARDED_BY(mu_);
  // Registered staging memory (address -> length), for Restore to register again.
  absl::flat_hash_map<void*, size_t> staging_ ABSL_GUARDED_BY(mu_);
  // The traffic of replicas Restore replaced, by node (stats() and node_traffic()).
  std::vector<NodeTraffic> retired_ ABSL_GUARDED_BY(mu_);
};

}  // namespace apr::kvstore

#endif  // APRUNTIME_KVSTORE_CLIENT_REPLICATED_TIER_H_
