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

// The tier over `nodes`: the node itself when there is one, else a ShardedTier. With
// `replication` 2 (0 and 1: none), a ReplicatedTier whose replica 0 is that tier over the
// first half of the nodes and replica 1 over the second; an odd count is refused.
absl::StatusOr<std::shared_ptr<StagingTier>> TierOverNodes(
    const std::vector<std::shared_ptr<RemoteTier>>& nodes, int replication = 1);

// The replica of node i of `num_nodes` under `replication` (0 without replication).
int ReplicaOfNode(int i, int num_nodes, int replication);

// Whether `replication` can spread over `num_nodes` nodes; the error names both.
absl::Status CheckReplication(int num_nodes, int replication);

// ConnectRemoteTiers, then TierOverNodes.
absl::StatusOr<std::shared_ptr<StagingTier>> ConnectStorageNodes(
    const std::vector<std::string>& addresses, const RemoteTierOptions& options,
    int replication = 1);

}  // namespace apr::kvstore

#endif  // APRUNTIME_KVSTORE_CLIENT_CONNECT_NODES_H_
