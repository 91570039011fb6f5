// A tier the GPU reaches through host staging: the CUDA decoder's remote placement reads
// blocks into pinned staging buffers (registered here, so that UCX gets into them skip its
// registration cache and are zero-copy on RDMA) and can give a sequence slots before their
// bytes exist. RemoteTier (one storage node) and ShardedTier (several) implement it, so
// GpuBlockFetcher and the CUDA decoder do not care how many nodes hold the cache.
// LocalTier implements it too (registration is a no-op for memcpy reads).
#ifndef APRUNTIME_KVSTORE_CLIENT_STAGING_TIER_H_
#define APRUNTIME_KVSTORE_CLIENT_STAGING_TIER_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kvstore/client/tier_client.h"

namespace apr::kvstore {

class StagingTier : public TierClient {
 public:
  // Registers host memory that reads land in; until UnregisterStaging(address).
  virtual absl::Status RegisterStaging(void* address, size_t length) = 0;
  // Drops the registration made for `address` (before that memory is freed).
  virtual void UnregisterStaging(void* address) = 0;
  // Gives the blocks slots without writing them and returns the slots; their bytes are
  // whatever the slots hold. For a caller that fills the slots itself later, or a
  // benchmark whose contents do not matter.
  virtual absl::StatusOr<std::vector<uint32_t>> AllocateBlocks(uint64_t seq,
                                                               absl::Span<const BlockKey> keys) = 0;
};

}  // namespace apr::kvstore

#endif  // APRUNTIME_KVSTORE_CLIENT_STAGING_TIER_H_
