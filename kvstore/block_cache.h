// Residency bookkeeping of a cache of blocks near the compute (GPU memory, or host memory
// for the CPU reference) for one (sequence, layer, KV head): which logical blocks sit in
// which of its fixed slots, and, for the next selection, which blocks must be fetched and
// into which slots. Blocks that stay selected from step to step are not fetched again;
// only the difference moves. Eviction is least-recently-selected first, never a block of
// the selection being planned.
//
// Pure bookkeeping: the caller moves the bytes, and must not let a planned fetch overwrite
// a slot that a still-running read (an attention kernel) uses. In the decode step that
// holds because layer l's fetch for step t+1 is planned after layer l's attention at t.
#ifndef APRUNTIME_KVSTORE_BLOCK_CACHE_H_
#define APRUNTIME_KVSTORE_BLOCK_CACHE_H_

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/types/span.h"

namespace apr::kvstore {

struct CachePlan {
  // Cache slot of each wanted block, in the order asked.
  std::vector<int32_t> slot;
  // Indices into the wanted list of the blocks to fetch (into slot[i]).
  std::vector<int32_t> fetch;
};

struct BlockCacheStats {
  int64_t plans = 0;
  int64_t hits = 0;    // wanted blocks already resident
  int64_t misses = 0;  // wanted blocks to fetch
  int64_t evictions = 0;
};

class BlockCache {
 public:
  explicit BlockCache(int32_t capacity);

  // Plans residency for `wanted` (distinct logical blocks). Afterwards every wanted block
  // counts as resident in plan->slot; the caller fetches plan->fetch before reading them.
  // ResourceExhausted when more blocks are wanted than the cache has slots;
  // InvalidArgument for a block listed twice.
  absl::Status Plan(absl::Span<const int64_t> wanted, CachePlan* plan);
  // Marks `block` resident in a slot without a fetch (its bytes were put there by the
  // caller, e.g. the tail block that just filled), evicting if needed. Returns its slot.
  int32_t Insert(int64_t block);
  // Forgets `block` (its slot becomes free).
  void Invalidate(int64_t block);
  // Forgets everything (e.g. the fetch into the slots failed).
  void Clear();

  int32_t capacity() const { return static_cast<int32_t>(slot_block_.size()); }
  int32_t resident() const { return static_cast<int32_t>(where_.size()); }
  bool contains(int64_t block) const { return where_.contains(block); }
  const BlockCacheStats& stats() const { return stats_; }

 private:
  int32_t TakeSlot(uint64_t protect_from);

  absl::flat_hash_map<int64_t, int32_t> where_;  // block -> slot
  std::vector<int64_t> slot_block_;              // slot -> block, -1 when free
  std::vector<uint64_t> last_used_;              // slot -> tick of its last selection
  uint64_t tick_ = 0;
  BlockCacheStats stats_;
};

}  // namespace apr::kvstore

#endif  // APRUNTIME_KVSTORE_BLOCK_CACHE_H_
