// The storage tier in this process: a BlockStore on the GPU's own host. Reads are memcpys
// on the calling thread (complete when StartRead returns); on the GPU the pool is instead
// read by the gather kernel through its mapped address (kvstore/cuda/), with the slots
// this client hands out.
#ifndef APRUNTIME_KVSTORE_CLIENT_LOCAL_TIER_H_
#define APRUNTIME_KVSTORE_CLIENT_LOCAL_TIER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "kvstore/block_store.h"
#include "kvstore/client/staging_tier.h"

namespace apr::kvstore {

class LocalTier : public StagingTier {
 public:
  // `store` is shared with whoever else uses the pool (the GPU registration, other
  // workers' LocalTiers).
  explicit LocalTier(std::shared_ptr<BlockStore> store) : store_(std::move(store)) {}

  BlockStore& store() { return *store_; }

  int64_t block_bytes() const override { return store_->block_bytes(); }
  std::string description() const override;
  absl::Status CreateSequence(uint64_t seq, int32_t num_layers, int32_t num_kv_heads) override;
  absl::StatusOr<int64_t> FreeSequence(uint64_t seq) override;
  absl::StatusOr<std::vector<uint32_t>> WriteBlocks(
      uint64_t seq, absl::Span<const BlockKey> keys,
      absl::Span<const std::byte* const> data) override;
  absl::StatusOr<std::vector<uint32_t>> LookupSlots(uint64_t seq,
                                                    absl::Span<const BlockKey> keys) override;
  absl::StatusOr<ReadId> StartRead(absl::Span<const uint32_t> slots,
                                   absl::Span<std::byte* const> dst) override;
  bool ReadDone(ReadId) override { return true; }
  absl::Status WaitRead(ReadId id) override;
  absl::StatusOr<BlockStoreStats> NodeStats() override { return store_->stats(); }
  // Reads are memcpys: staging needs no registration.
  absl::Status RegisterStaging(void*, size_t) override { return absl::OkStatus(); }
  void UnregisterStaging(void*) override {}
  absl::StatusOr<std::vector<uint32_t>> AllocateBlocks(uint64_t seq,
                                                       absl::Span<const BlockKey> keys) override {
    return store_->AllocateBlocks(seq, keys);
  }
  TierClientStats stats() const override;
  std::vector<NodeTraffic> node_traffic() const override { return {{"local pool", stats()}}; }

 private:
  std::shared_ptr<BlockStore> store_;
  mutable absl::Mutex mu_;
  TierClientStats stats_ ABSL_GUARDED_BY(mu_);
  ReadId next_id_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace apr::kvstore

#endif  // APRUNTIME_KVSTORE_CLIENT_LOCAL_TIER_H_
