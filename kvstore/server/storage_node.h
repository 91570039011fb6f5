// A storage node: a BlockStore whose pool is registered with UCX, a UCX worker progressed
// on its own thread (the data plane: workers read and write slots with one-sided
// operations), and the gRPC control plane (rpc/kvstore/v1/kvstore.proto). The
// storage_node binary runs one; tests can run one in process.
#ifndef APRUNTIME_KVSTORE_SERVER_STORAGE_NODE_H_
#define APRUNTIME_KVSTORE_SERVER_STORAGE_NODE_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "kvstore/block_store.h"
#include "kvstore/security.h"
#include "kvstore/ucx/ucx.h"

namespace grpc {
class Server;
}

namespace apr::kvstore {

struct StorageNodeOptions {
  BlockStoreOptions store;
  // Where the control plane listens; port 0 picks a free one (see grpc_port()).
  std::string grpc_address = "127.0.0.1:0";
  // UCX transports; wakeup is always on (the progress thread sleeps when idle).
  ucx::ContextOptions ucx;
  // The address workers reach the data plane at, separate from the listen address above
  // (which may be a wildcard): when set, UCX's network devices are pinned to the
  // interface holding it (ucx.net_devices, unless that is set too), so the UCX worker
  // address GetDataPlane hands out names it. Empty: UCX's default devices.
  std::string advertise_host;
  // For logs and Health; empty: the host name.
  std::string node_name;
  // How long the progress thread keeps polling after the last UCX event before it sleeps
  // on the worker's event fd. Transports that emulate one-sided reads with messages (TCP,
  // shared memory in UCX 1.13) need the node's CPU for every read; polling spares them a
  // wake-up each. RDMA reads do not involve the node's CPU at all.
  absl::Duration progress_spin = absl::Microseconds(500);
  // Sequences created by a client that names itself (metadata "apr-kv-owner", as
  // RemoteTier does) are freed once no call from that owner came for this long: a worker
  // that died leaves nothing behind. Clients renew with any call (RemoteTier: a Health
  // call every few seconds). Zero: never.
  absl::Duration lease = absl::Seconds(30);
  // Mutual TLS of the control plane (docs/KVSTORE.md "Security"): set, the node serves
  // only TLS clients whose certificate ca_file signed, and a sequence belongs to the
  // certificate that created it. Empty: plaintext.
  TlsFiles tls;
  // A file holding the bearer token every call must carry (metadata "authorization:
  // Bearer <token>"); calls without it are UNAUTHENTICATED. Empty: no token check.
  std::string auth_token_file;
};

// The name of this host's network interface whose address is `host` (an IPv4 or IPv6
// literal): "lo" for 127.0.0.1. InvalidArgument for a wildcard or a non-literal,
// NotFound (listing the interfaces) when no interface has it.
absl::StatusOr<std::string> InterfaceWithAddress(const std::string& host);

class StorageNode {
 public:
  // Maps and registers the pool, starts the UCX progress thread and the gRPC server.
  static absl::StatusOr<std::unique_ptr<StorageNode>> Start(const StorageNodeOptions& options);
  // Shuts down (if not yet) and releases everything, in reverse order of creation.
  ~StorageNode();

  int grpc_port() const { return grpc_port_; }
  const std::string& node_name() const { return node_name_; }
  // UCX_NET_DEVICES the node runs with ("" = UCX's default).
  const std::string& ucx_net_devices() const { return net_devices_; }
  BlockStore& store() { return *store_; }
  // Stops the control plane (in-flight RPCs finish) and the progress thread. Idempotent,
  // callable from any thread but a gRPC handler.
  void Shutdown();
  // Blocks until Shutdown() has been called.
  void Wait();

 private:
  class Service;
  StorageNode() = default;
  void ProgressLoop();
  void LeaseLoop();

  std::string node_name_;
  std::string net_devices_;
  absl::Duration spin_;
  absl::Time started_;
  std::unique_ptr<BlockStore> store_;
  std::unique_ptr<ucx::Context> ucx_context_;
  std::unique_ptr<ucx::Worker> ucx_worker_;
  std::unique_ptr<ucx::MemoryMap> ucx_pool_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  int grpc_port_ = 0;
  std::atomic<bool> stop_progress_{false};
  std::thread progress_;
  std::atomic<bool> shut_down_{false};
  absl::Notification stopped_;
  absl::Duration lease_;
  std::thread leases_;
};

}  // namespace apr::kvstore

#endif  // APRUNTIME_KVSTORE_SERVER_STORAGE_NODE_H_
