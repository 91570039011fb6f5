// Re-replication as a worker drives it (docs/KVSTORE.md "Replication"): with two copies of
// the KV cache over storage nodes and one copy lost, connects that copy's nodes afresh
// once they answer again (a node restarted at its address) and restores the copy from the
// other (ReplicatedTier::Restore). The CPU worker (cluster/worker_kv_store) and the CUDA
// decoder's remote tier (backends/cuda/remote_gpu_kv_tier) both call it before a new
// sequence is created.
#ifndef APRUNTIME_KVSTORE_CLIENT_COPY_RESTORER_H_
#define APRUNTIME_KVSTORE_CLIENT_COPY_RESTORER_H_

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "kvstore/client/remote_tier.h"
#include "kvstore/client/replicated_tier.h"

namespace apr::kvstore {

// How often a lost copy's nodes are tried: a node that is down refuses at once, but a hung
// one costs the RPC timeout in the sequence creation that tries it.
inline constexpr absl::Duration kRestoreProbeInterval = absl::Seconds(2);

// Not thread-safe: its owner calls it from one thread (or under its own lock).
class CopyRestorer {
 public:
  // `addresses`: every node of `tier`, in the order TierOverNodes split them into copies
  // (the first half copy 0, the second copy 1); `options` connect them.
  CopyRestorer(std::vector<std::string> addresses, RemoteTierOptions options,
               std::shared_ptr<ReplicatedTier> tier);

  // A node of the restored copy: its index in `addresses` and its new connection.
  struct RestoredNode {
    size_t index = 0;
    std::shared_ptr<RemoteTier> node;
  };
  // When exactly one copy is lost and the last try is kRestoreProbeInterval old: connects
  // that copy's nodes and restores it. The restored copy's nodes, or none (nothing lost,
  // not due yet, or it failed: the nodes do not answer yet, or the copy failed; logged once
  // per distinct reason, and tried again at the next call that is due).
  std::vector<RestoredNode> MaybeRestore();

 private:
  absl::Status Restore(int copy, std::vector<RestoredNode>* restored);

  const std::vector<std::string> addresses_;
  const RemoteTierOptions options_;
  const std::shared_ptr<ReplicatedTier> tier_;
  absl::Time next_try_ = absl::InfinitePast();
  std::string last_failure_;  // logged already
};

}  // namespace apr::kvstore

#endif  // APRUNTIME_KVSTORE_CLIENT_COPY_RESTORER_H_
