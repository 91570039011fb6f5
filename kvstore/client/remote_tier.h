// A storage node as a worker's tier: gRPC for the control plane, UCX one-sided operations
// for the data. Reads are non-blocking: StartRead issues one get per run of consecutive
// slots (coalesced) and returns; WaitRead progresses the UCX worker until the gets are
// done. Writes allocate slots with one AppendBlocks call and fill them with UCX puts
// (or, with WritePath::kInline, send the bytes in the call).
//
// Failure: every wait is bounded (data_timeout, rpc_timeout). A read that fails or times
// out is reported with whether the node still answers its control plane, so a dead node
// reads as "storage node ... is unreachable", never as a hang.
#ifndef APRUNTIME_KVSTORE_CLIENT_REMOTE_TIER_H_
#define APRUNTIME_KVSTORE_CLIENT_REMOTE_TIER_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "kvstore/client/staging_tier.h"
#include "kvstore/security.h"
#include "kvstore/ucx/ucx.h"
#include "rpc/kvstore/v1/kvstore.grpc.pb.h"

namespace apr::kvstore {

struct RemoteTierOptions {
  // The node's control plane, "host:port".
  std::string address;
  // UCX transports for this side; must share a transport with the node's list.
  ucx::ContextOptions ucx;
  enum class WritePath { kUcxPut, kInline };
  WritePath write_path = WritePath::kUcxPut;
  // UCX peer-failure detection (UCP_ERR_HANDLING_MODE_PEER). kAuto asks for it and
  // connects without it when the transports cannot provide it (UCX 1.13 shared memory);
  // then a dead node shows as a data timeout plus a failed Health check.
  enum class PeerFailure { kAuto, kRequire, kOff };
  PeerFailure peer_failure = PeerFailure::kAuto;
  absl::Duration rpc_timeout = absl::Seconds(10);
  absl::Duration data_timeout = absl::Seconds(10);
  // UCX moves data only while its worker is progressed. Without this, reads advance only
  // inside this client's calls (ReadDone, WaitRead); with it, a thread progresses the
  // worker whenever a read is in flight, so a prefetch overlaps the caller's compute.
  // Costs a core's share while reads are in flight.
  bool background_progress = false;
  // The node frees a client's sequences once it has not heard from it for its lease
  // (storage_node --lease_seconds, default 30 s). Every call names this client (metadata
  // "apr-kv-owner", a random id per RemoteTier) and renews; a thread calls Health this
  // often so an idle client keeps its sequences. Zero: no such thread.
  absl::Duration lease_renewal = absl::Seconds(3);
  // Mutual TLS to a node started with --tls_cert/--tls_key/--tls_ca: this client's
  // certificate and key, and the CA of the node's certificate. Empty: plaintext.
  TlsFiles tls;
  // The file with the node's bearer token (its --auth_token_file); sent with every call.
  // Empty: no token.
  std::string auth_token_file;
};

class RemoteTier : public StagingTier {
 public:
  // Checks Health, fetches the data-plane info, connects UCX. Unavailable naming the
  // address when the node does not answer.
  static absl::StatusOr<std::unique_ptr<RemoteTier>> Connect(const RemoteTierOptions& options);
  ~RemoteTier() override;

  // Staging buffers (StagingTier): gets into them skip UCX's registration cache; on RDMA
  // they are zero-copy.
  absl::Status RegisterStaging(void* address, size_t length) override;
  void UnregisterStaging(void* address) override;
  // Whether UCX watches the node for failure (see RemoteTierOptions::peer_failure).
  bool peer_failure_detection() const { return peer_failure_detection_; }
  absl::StatusOr<v1::HealthResponse> Health();
  const v1::DataPlaneInfo& data_plane() const { return data_plane_; }

  int64_t block_bytes() const override { return data_plane_.block_bytes(); }
  std::string description() const override;
  absl::Status CreateSequence(uint64_t seq, int32_t num_layers, int32_t num_kv_heads) override;
  absl::StatusOr<int64_t> FreeSequence(uint64_t seq) override;
  absl::StatusOr<std::vector<uint32_t>> WriteBlocks(
      uint64_t seq, absl::Span<const BlockKey> keys,
      absl::Span<const std::byte* const> data) override;
  absl::StatusOr<std::vector<uint32_t>> LookupSlots(uint64_t seq,
                                                    absl::Span<const BlockKey> keys) override;
  // AppendBlocks without data, one RPC (StagingTier).
  absl::StatusOr<std::vector<uint32_t>> AllocateBlocks(uint64_t seq,
                                                       absl::Span<const BlockKey> keys) override;
  absl::StatusOr<ReadId> StartRead(absl::Span<const uint32_t> slots,
                                   absl::Span<std::byte* const> dst) override;
  bool ReadDone(ReadId id) override;
  absl::Status WaitRead(ReadId id) override;
  absl::StatusOr<BlockStoreStats> NodeStats() override;
  TierClientStats stats() const override;
  std::vector<NodeTraffic> node_traffic() const override;

 private:
  explicit RemoteTier(const RemoteTierOptions& o);
  std::unique_ptr<grpc::ClientContext> NewContext() const;
  // `s` with what a Health check says about the node.
  absl::Status Explain(const absl::Status& s, const std::string& what);
  ucp_mem_h StagingHandle(const void* p, size_t n) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Parks a batch that still has operations in flight until the endpoint is closed.
  void Bury(std::unique_ptr<ucx::OpBatch> batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CountRpc() { rpcs_.fetch_add(1, std::memory_order_relaxed); }
  void ProgressLoop();
  void RenewLoop();
  bool ReadsInFlight() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits for `batch`; without UCX peer-failure detection, in slices with a Health check
  // between them, so that a dead node is noticed within about a second.
  absl::Status WaitBatch(ucx::OpBatch* batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const RemoteTierOptions options_;
  // options_.ucx with the transport list actually used (the node's when none is given).
  ucx::ContextOptions ucx_options_;
  std::unique_ptr<v1::KvStore::Stub> stub_;
  v1::DataPlaneInfo data_plane_;
  bool peer_failure_detection_ = false;

  mutable absl::Mutex mu_;  // the UCX objects are single-threaded
  std::unique_ptr<ucx::Context> context_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<ucx::Worker> worker_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<ucx::MemoryMap>> staging_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<ucx::Endpoint> endpoint_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<ReadId, std::unique_ptr<ucx::OpBatch>> reads_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<ucx::OpBatch>> graveyard_ ABSL_GUARDED_BY(mu_);
  ReadId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  TierClientStats stats_ ABSL_GUARDED_BY(mu_);
  std::atomic<int64_t> rpcs_{0};
  bool stop_progress_ ABSL_GUARDED_BY(mu_) = false;
  std::thread progress_;
  const uint64_t owner_;       // this client's id in the node's leases
  std::string authorization_;  // "Bearer <token>", or empty
  absl::Notification stop_renewal_;
  std::thread renewal_;
};

}  // namespace apr::kvstore

#endif  // APRUNTIME_KVSTORE_CLIENT_REMOTE_TIER_H_
