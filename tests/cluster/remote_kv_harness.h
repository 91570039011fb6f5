// Real processes on 127.0.0.1 for the tests of a CPU worker's KV cache on storage nodes
// (sharded_kv_test, replicated_kv_test): nodes, a worker loaded over them, and greedy
// streams through a launched config.
#ifndef APRUNTIME_TESTS_CLUSTER_REMOTE_KV_HARNESS_H_
#define APRUNTIME_TESTS_CLUSTER_REMOTE_KV_HARNESS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cluster/process.h"
#include "kvstore/testing/storage_node_process.h"
#include "rpc/worker/v1/worker.grpc.pb.h"

namespace apr::cluster::testing {

// A storage node for apr-tiny's float32 blocks (4096 of them) over UCX tcp on loopback;
// on `port` when it is not 0 (a node restarted at its address).
std::unique_ptr<kvstore::testing::StorageNodeProcess> StartNode(const std::string& name,
                                                                int port = 0);

// Blocks in use on `node` (its Stats RPC; a failure is a test failure).
int64_t UsedBlocks(const kvstore::testing::StorageNodeProcess& node);

// A CPU worker process (cluster/worker, `extra_flags` added) loaded with apr-tiny, its KV
// blocks on `nodes` in `replication` copies (LoadModel's kv_cache). SIGTERM on destruction.
class RemoteKvWorker {
 public:
  RemoteKvWorker(const std::string& name, const std::vector<std::string>& nodes,
                 int replication = 1, const std::vector<std::string>& extra_flags = {});
  ~RemoteKvWorker();
  bool ok() const { return stub_ != nullptr; }
  ::apr::worker::v1::Worker::Stub& stub() { return *stub_; }
  // WorkerStats.rebuilt_sequences: sequences prefilled again after a lost KV store.
  int64_t Rebuilt();
  // WorkerStats.fetch_bytes: bytes read from the storage nodes, as of the last step.
  int64_t FetchBytes();

 private:
  // GetStats (a failed call is a test failure).
  ::apr::worker::v1::WorkerStats Stats();

  std::optional<Process> process_;
  std::unique_ptr<::apr::worker::v1::Worker::Stub> stub_;
};

struct LaunchedStreams {
  std::vector<std::vector<int32_t>> tokens;  // one per stream; empty when the launch failed
  std::string log;                           // the launcher's and its children's output
};

// Starts `config_text` (its run files named after `name`), streams three greedy
// generations of 32 tokens at once (token-id prompts of 100, 250 and 400 tokens), stops
// the cluster. Failures are test failures.
LaunchedStreams StreamThreeGreedy(const std::string& name, const std::string& config_text);

// The whole file, or "" when it cannot be read.
std::string ReadFile(const std::string& path);

}  // namespace apr::cluster::testing

#endif  // APRUNTIME_TESTS_CLUSTER_REMOTE_KV_HARNESS_H_
