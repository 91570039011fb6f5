#include "kvstore/client/connect_nodes.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kvstore/client/replicated_tier.h"
#include "kvstore/client/sharded_tier.h"

namespace apr::kvstore {

absl::StatusOr<std::vector<std::shared_ptr<RemoteTier>>> ConnectRemoteTiers(
    const std::vector<std::string>& addresses, const RemoteTierOptions& options) {
  if (addresses.empty()) return absl::InvalidArgumentError("no storage node addresses");
  std::vector<absl::StatusOr<std::unique_ptr<RemoteTier>>> got(addresses.size());
  std::vector<std::thread> threads;
  // In parallel: each Connect is a few RPCs and a UCX handshake.
  for (size_t i = 0; i < addresses.size(); ++i) {
    threads.emplace_back([&, i] {
      RemoteTierOptions o = options;
      o.address = addresses[i];
      got[i] = RemoteTier::Connect(o);
    });
  }
  for (std::thread& t : threads) t.join();
  std::vector<std::shared_ptr<RemoteTier>> nodes;
  for (auto& g : got) {
    if (!g.ok()) return g.status();  // RemoteTier's errors name the address
    nodes.push_back(std::shared_ptr<RemoteTier>(*std::move(g)));
  }
  return nodes;
}

namespace {

// One node itself, several sharded by KV head.
absl::StatusOr<std::shared_ptr<StagingTier>> OneCopy(
    const std::vector<std::shared_ptr<RemoteTier>>& nodes) {
  if (nodes.size() == 1) return std::shared_ptr<StagingTier>(nodes[0]);
  std::vector<std::shared_ptr<StagingTier>> shards(nodes.begin(), nodes.end());
  APR_ASSIGN_OR_RETURN(auto sharded, ShardedTier::Create(std::move(shards)));
  return std::shared_ptr<StagingTier>(std::move(sharded));
}

}  // namespace

absl::Status CheckReplication(int num_nodes, int replication) {
  if (replication < 0 || replication > ReplicatedTier::kReplicas) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV replication ", replication, " is not supported: 0 or 1 (one copy) or 2 (two)"));
  }
  if (replication == 2 && (num_nodes < 2 || num_nodes % 2 != 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV replication 2 needs an even number of storage nodes (two halves, one "
                     "copy each), not ",
                     num_nodes));
  }
  return absl::OkStatus();
}

int ReplicaOfNode(int i, int num_nodes, int replication) {
  return replication == 2 ? i / (num_nodes / 2) : 0;
}

absl::StatusOr<std::shared_ptr<StagingTier>> TierOverNodes(
    const std::vector<std::shared_ptr<RemoteTier>>& nodes, int replication) {
  APR_RETURN_IF_ERROR(CheckReplication(static_cast<int>(nodes.size()), replication));
  if (replication != 2) return OneCopy(nodes);
  const size_t half = nodes.size() / 2;
  APR_ASSIGN_OR_RETURN(auto primary, OneCopy({nodes.begin(), nodes.begin() + half}));
  APR_ASSIGN_OR_RETURN(auto secondary, OneCopy({nodes.begin() + half, nodes.end()}));
  APR_ASSIGN_OR_RETURN(auto replicated,
                       ReplicatedTier::Create(std::move(primary), std::move(secondary)));
  return std::shared_ptr<StagingTier>(std::move(replicated));
}

absl::StatusOr<std::shared_ptr<StagingTier>> ConnectStorageNodes(
    const std::vector<std::string>& addresses, const RemoteTierOptions& options,
    int replication) {
  // Before connecting: a bad count is the config's fault, whichever nodes answer.
  APR_RETURN_IF_ERROR(CheckReplication(static_cast<int>(addresses.size()), replication));
  APR_ASSIGN_OR_RETURN(auto nodes, ConnectRemoteTiers(addresses, options));
  return TierOverNodes(nodes, replication);
}

}  // namespace apr::kvstore
