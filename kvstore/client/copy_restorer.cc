#include "kvstore/client/copy_restorer.h"

#include <cstdio>

#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "kvstore/client/connect_nodes.h"

namespace apr::kvstore {

CopyRestorer::CopyRestorer(std::vector<std::string> addresses, RemoteTierOptions options,
                           std::shared_ptr<ReplicatedTier> tier)
    : addresses_(std::move(addresses)), options_(std::move(options)), tier_(std::move(tier)) {}

absl::Status CopyRestorer::Restore(int copy, std::vector<RestoredNode>* restored) {
  const int n = static_cast<int>(addresses_.size());
  std::vector<size_t> indices;
  std::vector<std::string> addresses;
  for (int i = 0; i < n; ++i) {
    if (ReplicaOfNode(i, n, ReplicatedTier::kReplicas) != copy) continue;
    indices.push_back(i);
    addresses.push_back(addresses_[i]);
  }
  APR_ASSIGN_OR_RETURN(auto nodes, ConnectRemoteTiers(addresses, options_));
  APR_ASSIGN_OR_RETURN(auto fresh, TierOverNodes(nodes));
  APR_RETURN_IF_ERROR(tier_->Restore(copy, std::move(fresh)));
  for (size_t k = 0; k < nodes.size(); ++k) restored->push_back({indices[k], nodes[k]});
  return absl::OkStatus();
}

std::vector<CopyRestorer::RestoredNode> CopyRestorer::MaybeRestore() {
  std::vector<RestoredNode> restored;
  if (tier_->lost(0) == tier_->lost(1)) return restored;  // both serve, or nothing to copy
  const absl::Time now = absl::Now();
  if (now < next_try_) return restored;
  next_try_ = now + kRestoreProbeInterval;
  const int copy = tier_->lost(0) ? 0 : 1;
  absl::Status s = Restore(copy, &restored);
  if (s.ok()) {
    last_failure_.clear();
  } else if (s.ToString() != last_failure_) {
    last_failure_ = s.ToString();
    std::fprintf(stderr, "kvstore: KV copy %d not restored yet (tried every %.0f s): %s\n", copy,
                 absl::ToDoubleSeconds(kRestoreProbeInterval), last_failure_.c_str());
  }
  return restored;
}

}  // namespace apr::kvstore
