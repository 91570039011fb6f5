// The storage tier as a worker sees it: sequences, write-back of completed blocks, and
// asynchronous reads of slot lists into host buffers. Implementations:
//   LocalTier   (local_tier.h)   the pool lives in this process (the GPU's own host);
//   RemoteTier  (remote_tier.h)  a storage node over gRPC (control) and UCX (data);
//   ShardedTier (sharded_tier.h) several nodes, each sequence split over them by KV head.
// A decode step asks for blocks by slot: the caller keeps the block tables that
// WriteBlocks returns, so reads need no control-plane round trip.
//
// Thread-safe: implementations serialise calls internally.
#ifndef APRUNTIME_KVSTORE_CLIENT_TIER_CLIENT_H_
#define APRUNTIME_KVSTORE_CLIENT_TIER_CLIENT_H_

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kvstore/block_store.h"

namespace apr::kvstore {

struct TierClientStats {
  int64_t blocks_written = 0;  // blocks stored by WriteBlocks
  int64_t bytes_written = 0;
  int64_t reads = 0;        // StartRead calls
  int64_t blocks_read = 0;  // slots read
  int64_t bytes_read = 0;
  int64_t data_ops = 0;       // one-sided operations issued (after coalescing), or memcpys
  int64_t waits = 0;          // WaitRead calls
  int64_t waits_blocked = 0;  // ... that found the read still in flight (a stall)
  double wait_seconds = 0;    // time spent inside WaitRead
  int64_t rpcs = 0;           // control-plane calls made
};

// One storage node's traffic as a client counts it: `node` is the node's address ("local
// pool" in process). A tier over several nodes lists each of them (TierClient::node_traffic).
struct NodeTraffic {
  std::string node;
  TierClientStats stats;
};

// The node_traffic of each of `tiers` (pointers to TierClients), in order: what a tier over
// several nodes reports.
template <typename TierPointers>
std::vector<NodeTraffic> NodeTrafficOf(const TierPointers& tiers) {
  std::vector<NodeTraffic> all;
  for (const auto& tier : tiers) {
    std::vector<NodeTraffic> t = tier->node_traffic();
    all.insert(all.end(), t.begin(), t.end());
  }
  return all;
}

// Adds `part`'s data-movement counters (written, read, operations, calls) to `*total`: a
// tier over several nodes (ShardedTier, ReplicatedTier) sums its nodes' traffic this way
// and counts reads and waits itself.
inline void AddTraffic(const TierClientStats& part, TierClientStats* total) {
  total->blocks_written += part.blocks_written;
  total->bytes_written += part.bytes_written;
  total->blocks_read += part.blocks_read;
  total->bytes_read += part.bytes_read;
  total->data_ops += part.data_ops;
  total->rpcs += part.rpcs;
}

// The id of this process's `n`-th sequence in a storage tier that other processes share:
// a random 64-bit base, drawn once per process from std::random_device, plus `n`. Not the
// process id: in containers every worker is pid 1, and pid-salted ids of two workers on one
// node collided (ALREADY_EXISTS). Two processes collide only when their bases lie within
// their sequence counts of each other (about 2^-32 for 2^16 workers of 2^16 sequences).
inline uint64_t NewTierSequenceId(uint64_t n) {
  static const uint64_t base = [] {
    std::random_device r;
    return (uint64_t{r()} << 32) ^ uint64_t { r() };
  }();
  return base + n;
}

// Identifies one StartRead until WaitRead has returned for it.
using ReadId = uint64_t;

class TierClient {
 public:
  virtual ~TierClient() = default;

  // Bytes of one block (slot) in this tier.
  virtual int64_t block_bytes() const = 0;
  // For logs: "local pool" or "storage node 127.0.0.1:4000 (UCX tcp)".
  virtual std::string description() const = 0;

  virtual absl::Status CreateSequence(uint64_t seq, int32_t num_layers, int32_t num_kv_heads) = 0;
  // Frees every block of `seq`; returns how many.
  virtual absl::StatusOr<int64_t> FreeSequence(uint64_t seq) = 0;

  // Stores complete blocks: `data[i]` (block_bytes() bytes, host memory) holds `keys[i]`.
  // Returns their slots. When this returns OK the bytes are readable by any client.
  // Blocks are appended in order per table (BlockStore::AllocateBlocks); rewriting an
  // existing block overwrites its slot.
  virtual absl::StatusOr<std::vector<uint32_t>> WriteBlocks(
      uint64_t seq, absl::Span<const BlockKey> keys, absl::Span<const std::byte* const> data) = 0;

  // The slots of stored blocks (a control-plane call in remote mode).
  virtual absl::StatusOr<std::vector<uint32_t>> LookupSlots(uint64_t seq,
                                                            absl::Span<const BlockKey> keys) = 0;

  // Starts copying slot `slots[i]` into `dst[i]` (block_bytes() bytes of host memory each,
  // which must stay valid until WaitRead returns). Returns at once in remote mode.
  virtual absl::StatusOr<ReadId> StartRead(absl::Span<const uint32_t> slots,
                                           absl::Span<std::byte* const> dst) = 0;
  // Whether the read has finished (successfully or not); never blocks.
  virtual bool ReadDone(ReadId id) = 0;
  // Waits for the read, at most the client's data timeout. The id is spent afterwards.
  // Errors name the tier and say whether its node is reachable at all.
  virtual absl::Status WaitRead(ReadId id) = 0;

  // Read in one call.
  absl::Status Read(absl::Span<const uint32_t> slots, absl::Span<std::byte* const> dst) {
    auto id = StartRead(slots, dst);
    if (!id.ok()) return id.status();
    return WaitRead(*id);
  }

  // The pool's occupancy and counters (an RPC in remote mode).
  virtual absl::StatusOr<BlockStoreStats> NodeStats() = 0;
  // This client's counters.
  virtual TierClientStats stats() const = 0;
  // The same traffic per storage node (docs/KVSTORE.md "Sharding": per-node fetch rates).
  virtual std::vector<NodeTraffic> node_traffic() const { return {{description(), stats()}}; }
};

}  // namespace apr::kvstore

#endif  // APRUNTIME_KVSTORE_CLIENT_TIER_CLIENT_H_
