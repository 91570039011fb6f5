// runtime/kv_offload.h over a storage tier (local pool or remote node): one sequence's
// blocks, its block tables (kept here, so reads need no control-plane call), and a block
// cache per (layer, KV head) in host memory so that blocks selected again are not fetched
// again. Prefetch() starts fetching a later step's blocks (cross-token prefetch); the
// ReadBlocks that needs them waits only for that fetch, and counts a stall when it had to.
//
// This is the CPU reference's offload and the model of the GPU path, where the cache lives
// in GPU memory and the copy runs on its own stream (kvstore/cuda/).
#ifndef APRUNTIME_KVSTORE_TIER_KV_OFFLOAD_H_
#define APRUNTIME_KVSTORE_TIER_KV_OFFLOAD_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kvstore/block_cache.h"
#include "kvstore/client/tier_client.h"
#include "kvstore/host_memory.h"
#include "runtime/kv_offload.h"

namespace apr::kvstore {

struct TierKvOffloadOptions {
  uint64_t sequence_id = 0;
  int32_t num_layers = 0;
  int32_t num_kv_heads = 0;
  // Slots of the block cache per (layer, KV head); 0: no cache (every read fetches every
  // block, as offloading without a cache would). Must hold a whole selection.
  int32_t cache_blocks_per_head = 0;
};

struct TierKvOffloadStats {
  int64_t blocks_written = 0;
  int64_t blocks_requested = 0;  // blocks ReadBlocks was asked for
  int64_t cache_hits = 0;        // ... already in the cache (no transfer)
  int64_t blocks_fetched = 0;    // blocks moved from the tier (reads and prefetches)
  int64_t bytes_fetched = 0;
  int64_t prefetched_blocks = 0;  // blocks moved by Prefetch
  int64_t prefetch_waits = 0;     // ReadBlocks that had a prefetch of its layer in flight
  int64_t stalls = 0;             // ... which was not complete yet: the step waited
  int64_t late_blocks = 0;        // blocks ReadBlocks fetched itself (mispredicted)
};

class TierKvOffload : public KvOffload {
 public:
  // Creates the sequence in `tier` (not owned; must outlive this).
  static absl::StatusOr<std::unique_ptr<TierKvOffload>> Create(TierClient* tier,
                                                               const TierKvOffloadOptions& options);
  // Frees the sequence in the tier unless Close() did.
  ~TierKvOffload() override;
  // Frees the sequence now; returns how many blocks the tier freed.
  absl::StatusOr<int64_t> Close();

  int64_t block_bytes() const override { return tier_->block_bytes(); }
  absl::Status WriteBlocks(absl::Span<const KvBlockRef> blocks,
                           absl::Span<const void* const> data) override;
  absl::Status ReadBlocks(absl::Span<const KvBlockRef> blocks,
                          absl::Span<void* const> dst) override;
  // Starts moving `blocks` (of one layer, already written) into the cache and returns.
  // Needs a cache. A prefetch of the same layer still in flight is waited for first.
  absl::Status Prefetch(absl::Span<const KvBlockRef> blocks);

  TierKvOffloadStats stats() const;
  const TierKvOffloadOptions& options() const { return options_; }

 private:
  TierKvOffload(TierClient* tier, const TierKvOffloadOptions& options);
  int64_t TableIndex(const KvBlockRef& r) const {
    return r.layer * options_.num_kv_heads + r.kv_head;
  }
  std::byte* CacheSlot(int64_t table, int32_t slot) const;
  absl::Status CheckRef(const KvBlockRef& r, bool written) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Waits for the prefetch of `layer`, if any; clears the layer's caches if it failed.
  absl::Status FinishPrefetch(int64_t layer, bool count) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Plans the cache for `blocks` and starts fetching what is missing; `*id` is set when a
  // read was started. `slots` receives each block's cache slot.
  absl::Status PlanAndFetch(absl::Span<const KvBlockRef> blocks, std::vector<int32_t>* slots,
                            std::optional<ReadId>* id, int64_t* fetched)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ClearLayer(int64_t layer) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  TierClient* const tier_;
  const TierKvOffloadOptions options_;
  bool closed_ = false;
  HostRegion cache_memory_;

  mutable absl::Mutex mu_;
  std::vector<std::vector<uint32_t>> tables_ ABSL_GUARDED_BY(mu_);   // [layer * heads + head]
  std::vector<BlockCache> caches_ ABSL_GUARDED_BY(mu_);              // same index
  std::vector<std::optional<ReadId>> pending_ ABSL_GUARDED_BY(mu_);  // [layer]
  TierKvOffloadStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace apr::kvstore

#endif  // APRUNTIME_KVSTORE_TIER_KV_OFFLOAD_H_
