// A worker's KV storage node (kvstore/), or several that share every sequence by KV head
// (docs/KVSTORE.md "Sharding"), optionally holding two copies of it ("Replication"): the
// connections, the offloaded sequences made there, and what counts as having lost a node.
// Nodes are separate processes; when one dies or restarts, the step engine rebuilds the
// sequences from their token histories (runtime/step_engine.h) through this class, which
// reconnects for them. With two copies, a lost node's copy is dropped instead and the
// other serves on: nothing is rebuilt until both copies are lost. When the lost copy's
// node(s) answer again, the copy is restored from the other (re-replication).
#ifndef APRUNTIME_CLUSTER_WORKER_KV_STORE_H_
#define APRUNTIME_CLUSTER_WORKER_KV_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "backends/cpu/cpu_decoder.h"
#include "kvstore/security.h"
#include "runtime/step_engine.h"

namespace apr::kvstore {
class CopyRestorer;
struct RemoteTierOptions;
class RemoteTier;
class ReplicatedTier;
class TierClient;
}  // namespace apr::kvstore

namespace apr::cluster {

struct WorkerKvStoreOptions {
  // "host:port" of each storage node's control plane; several: sharded by KV head.
  std::vector<std::string> addresses;
  // 2: two copies of every block, over the first and the second half of `addresses`.
  int replication = 1;
  std::string ucx_tls = "tcp";  // this side's UCX transports
  std::string ucx_net_devices = "lo";
  // How long a prefill or step that lost the node waits for it to answer again (a
  // restarted node at the same address) before the sequences fail with UNAVAILABLE.
  double reconnect_timeout_seconds = 10;
  // The node's mutual TLS (this worker's certificate) and bearer token file
  // (ClusterConfig.storage_security, docs/KVSTORE.md "Security"); empty: plaintext.
  kvstore::TlsFiles tls;
  std::string auth_token_file;
};

class WorkerKvStore {
 public:
  explicit WorkerKvStore(WorkerKvStoreOptions options);
  ~WorkerKvStore();  // out of line: kvstore::CopyRestorer is incomplete here

  // Step engine options for `decoder` (not owned; outlives the engine): each sequence's
  // KV blocks live in the node; a status that says the node was lost is recoverable.
  DecoderStepEngineOptions EngineOptions(cpu::CpuDecoder* decoder);

  // Whether `s`, from a prefill or step, may mean the node was lost (rather than a bad
  // request): a rebuild from the token history is then worth trying.
  static bool NodeLost(const absl::Status& s);

  // Bytes read from each configured storage node since the worker started (connections
  // replaced after a loss included), in the configured order (apr_fetch_bytes_total and
  // apr_storage_node_fetch_bytes_total of the CPU worker).
  std::vector<std::pair<std::string, int64_t>> NodeBytesRead();

 private:
  // The connected node(s), reconnecting all (up to the reconnect timeout) when one stopped
  // answering or answers as a new process (restarted: its blocks and the old UCX endpoint
  // are gone, though the old gRPC channel reaches it).
  absl::StatusOr<std::shared_ptr<kvstore::TierClient>> Tier();
  // Why the connected nodes cannot be used as they are ("" when they can). With two
  // copies, a node gone or restarted marks its copy lost, which is fatal only for the last.
  std::string LostNode() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Node i's replica (0 without replication).
  int ReplicaOf(size_t i) const;
  // Node i of n's part in the tier, for the log.
  std::string NodeRole(size_t i, size_t n) const;
  // One attempt at connecting every node; sets tier_, nodes_ and node_pids_.
  absl::Status Connect() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The client options of every node connection.
  kvstore::RemoteTierOptions NodeOptions() const;
  // With two copies, one lost: restores it when its nodes answer again
  // (kvstore::CopyRestorer, at most every kvstore::kRestoreProbeInterval) and takes the
  // restored nodes' new connections and process ids.
  void TryRestoreCopy() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<OwnedSequence> NewSequence(cpu::CpuDecoder* decoder, uint64_t id);

  const WorkerKvStoreOptions options_;
  // XORed into sequence ids on the node: the front end numbers each group's sequences
  // from 1, and several workers (or a restarted one) may share a node.
  const uint64_t id_salt_;
  absl::Mutex mu_;
  std::shared_ptr<kvstore::TierClient> tier_ ABSL_GUARDED_BY(mu_);  // over nodes_
  std::vector<std::shared_ptr<kvstore::RemoteTier>> nodes_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> node_pids_ ABSL_GUARDED_BY(mu_);  // the node processes connected to
  // tier_ itself when it holds two copies, else null.
  std::shared_ptr<kvstore::ReplicatedTier> replicated_ ABSL_GUARDED_BY(mu_);
  // Bytes read per node over connections already replaced (NodeBytesRead).
  std::map<std::string, int64_t> retired_bytes_ ABSL_GUARDED_BY(mu_);
  // Restores a lost copy of replicated_ (null without replication).
  std::unique_ptr<kvstore::CopyRestorer> restorer_ ABSL_GUARDED_BY(mu_);
};

}  // namespace apr::cluster

#endif  // APRUNTIME_CLUSTER_WORKER_KV_STORE_H_
