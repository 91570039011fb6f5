// A worker's storage tier from the addresses of its storage nodes: one node is a
// RemoteTier, several are a ShardedTier over one RemoteTier each (docs/KVSTORE.md
// "Sharding"). Used by the CUDA decoder's remote placement and the CPU worker alike.
#ifndef APRUNTIME_KVSTORE_CLIENT_CONNECT_NODES_H_
#define APRUNTIME_KVSTORE_CLIENT_CONNECT_NODES_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kvstore/client/remote_tier.h"
#include "kvstore/client/staging_tier.h"

namespace apr::kvstore {

// A RemoteTier per address ("host:port"), connected in parallel with `options` (whose
// `address` is replaced). The first failure, naming its address.
absl::StatusOr<std::vector<std::shared_ptr<RemoteTier>>> ConnectRemoteTiers(
    const std::vector<std::string>& addresses, const RemoteTierOptions& options);

// The tier over `nodes`: the node itself when there is one, else a ShardedTier.
absl::StatusOr<std::shared_ptr<StagingTier>> TierOverNodes(
    const std::vector<std::shared_ptr<RemoteTier>>& nodes);

// ConnectRemoteTiers, then TierOverNodes.
absl::StatusOr<std::shared_ptr<StagingTier>> ConnectStorageNodes(
    const std::vector<std::string>& addresses, const RemoteTierOptions& options);

}  // namespace apr::kvstore

#endif  // APRUNTIME_KVSTORE_CLIENT_CONNECT_NODES_H_
