// The storage tier's state on one host: a pool of fixed-size block slots in host memory,
// a block table per (sequence, layer, KV head) mapping logical blocks to slots, sequence
// lifecycle and statistics. The storage node serves one over gRPC + UCX; a worker in local
// mode owns one in process. Registration of the pool for the GPU or for UCX is done by
// separate components over base() / region_bytes().
#ifndef APRUNTIME_KVSTORE_BLOCK_STORE_H_
#define APRUNTIME_KVSTORE_BLOCK_STORE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "kvstore/host_memory.h"
#include "kvstore/slot_allocator.h"

namespace apr::kvstore {

// One logical block of a sequence: tokens [16 * block, 16 * block + 16) of one layer and
// KV head.
struct BlockKey {
  int32_t layer = 0;
  int32_t kv_head = 0;
  int64_t block = 0;
};

struct BlockStoreOptions {
  int64_t block_bytes = 0;      // bytes of one slot (geometry.h BlockBytes)
  int64_t capacity_blocks = 0;  // slots in the pool; the pool is block_bytes * this
  bool populate = true;         // fault every page in at start (see HostRegion)
};

struct BlockStoreStats {
  int64_t block_bytes = 0;
  int64_t capacity_blocks = 0;
  int64_t used_blocks = 0;
  int64_t free_blocks = 0;
  int64_t sequences = 0;
  int64_t blocks_allocated_total = 0;  // slots handed out since start
  int64_t blocks_freed_total = 0;      // slots returned since start
  int64_t allocation_failures = 0;     // AllocateBlocks refused because the pool was full
  int64_t blocks_written_inline = 0;   // blocks whose bytes came through WriteBlocks
  int64_t blocks_read_inline = 0;      // blocks whose bytes went out through ReadBlocks
  int64_t slots_looked_up = 0;         // slots returned by LookupSlots / BlockTable

  int64_t used_bytes() const { return used_blocks * block_bytes; }
  int64_t capacity_bytes() const { return capacity_blocks * block_bytes; }
};

// Thread-safe. Slot memory is read and written without the lock (by UCX, the GPU, or
// memcpy); the lock guards the tables and the allocator only.
class BlockStore {
 public:
  // InvalidArgument for non-positive sizes or a capacity beyond 2^32 - 1 slots;
  // ResourceExhausted when the host memory cannot be mapped.
  static absl::StatusOr<std::unique_ptr<BlockStore>> Create(const BlockStoreOptions& options);

  int64_t block_bytes() const { return block_bytes_; }
  int64_t capacity_blocks() const { return capacity_blocks_; }
  // The pool: slot s occupies [base() + s * block_bytes(), + block_bytes()).
  std::byte* base() const { return region_.data(); }
  size_t region_bytes() const { return region_.size(); }
  std::byte* slot_data(uint32_t slot) const { return base() + int64_t{slot} * block_bytes_; }

  // A new, empty sequence with `num_layers` x `num_kv_heads` block tables. Sequence ids
  // are chosen by the caller (the cluster's id); AlreadyExists when taken.
  absl::Status CreateSequence(uint64_t seq, int32_t num_layers, int32_t num_kv_heads);
  // Frees every block of `seq` and forgets it; returns how many blocks were freed.
  absl::StatusOr<int64_t> FreeSequence(uint64_t seq);

  // Gives each listed block a slot and returns the slots in order. A block is either
  // appended (its index equals its table's current length, counting earlier entries of
  // the same request) or already present (its existing slot is returned, so a retried
  // request is harmless). All or nothing: ResourceExhausted naming the capacity when the
  // pool cannot hold the new blocks; InvalidArgument for a gap, a bad layer or head.
  absl::StatusOr<std::vector<uint32_t>> AllocateBlocks(uint64_t seq,
                                                       absl::Span<const BlockKey> keys);
  // AllocateBlocks, then copies `data` (keys.size() * block_bytes() bytes, in key order)
  // into the slots: the control-plane write path.
  absl::StatusOr<std::vector<uint32_t>> WriteBlocks(uint64_t seq, absl::Span<const BlockKey> keys,
                                                    std::string_view data);

  // The slots of existing blocks; NotFound naming the first missing one.
  absl::StatusOr<std::vector<uint32_t>> LookupSlots(uint64_t seq,
                                                    absl::Span<const BlockKey> keys) const;
  // One whole block table (logical block i -> slot).
  absl::StatusOr<std::vector<uint32_t>> BlockTable(uint64_t seq, int32_t layer,
                                                   int32_t kv_head) const;
  // The bytes of existing blocks, in key order: the control-plane read path (tests and
  // clients without a data plane).
  absl::StatusOr<std::string> ReadBlocks(uint64_t seq, absl::Span<const BlockKey> keys) const;

  BlockStoreStats stats() const;

 private:
  struct Sequence {
    int32_t num_layers = 0;
    int32_t num_kv_heads = 0;
    std::vector<std::vector<uint32_t>> tables;  // [layer * num_kv_heads + kv_head]
    int64_t blocks = 0;
  };

  BlockStore(HostRegion region, int64_t block_bytes, int64_t capacity_blocks);
  absl::StatusOr<const Sequence*> FindLocked(uint64_t seq) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::vector<uint32_t>> LookupLocked(uint64_t seq,
                                                     absl::Span<const BlockKey> keys) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  HostRegion region_;
  const int64_t block_bytes_;
  const int64_t capacity_blocks_;

  mutable absl::Mutex mu_;
  SlotAllocator slots_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, Sequence> sequences_ ABSL_GUARDED_BY(mu_);
  mutable BlockStoreStats counters_ ABSL_GUARDED_BY(mu_);  // the *_total and inline counts
};

}  // namespace apr::kvstore

#endif  // APRUNTIME_KVSTORE_BLOCK_STORE_H_
