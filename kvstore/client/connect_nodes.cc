#include "kvstore/client/connect_nodes.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
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

absl::StatusOr<std::shared_ptr<StagingTier>> TierOverNodes(
    const std::vector<std::shared_ptr<RemoteTier>>& nodes) {
  if (nodes.size() == 1) return std::shared_ptr<StagingTier>(nodes[0]);
  std::vector<std::shared_ptr<StagingTier>> shards(nodes.begin(), nodes.end());
  APR_ASSIGN_OR_RETURN(auto sharded, ShardedTier::Create(std::move(shards)));
  return std::shared_ptr<StagingTier>(std::move(sharded));
}

absl::StatusOr<std::shared_ptr<StagingTier>> ConnectStorageNodes(
    const std::vector<std::string>& addresses, const RemoteTierOptions& options) {
  APR_ASSIGN_OR_RETURN(auto nodes, ConnectRemoteTiers(addresses, options));
  return TierOverNodes(nodes);
}

}  // namespace apr::kvstore
