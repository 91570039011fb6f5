// Runs the storage_node binary as a separate process for tests and benchmarks: starts it
// with the given flags (plus --grpc_port=0 --grpc_host=127.0.0.1), reads the port from its
// "ready" line, and kills it when done.
#ifndef APRUNTIME_KVSTORE_TESTING_STORAGE_NODE_PROCESS_H_
#define APRUNTIME_KVSTORE_TESTING_STORAGE_NODE_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace apr::kvstore::testing {

class StorageNodeProcess {
 public:
  // `binary`: path of storage_node; `flags`: extra flags ("--capacity_blocks=64", ...).
  // Waits at most `ready_timeout` for the ready line.
  static absl::StatusOr<std::unique_ptr<StorageNodeProcess>> Start(
      const std::string& binary, const std::vector<std::string>& flags,
      absl::Duration ready_timeout = absl::Seconds(30));
  // Kills the process (SIGKILL) if it still runs.
  ~StorageNodeProcess();

  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // The ready line, for logs.
  const std::string& ready_line() const { return ready_line_; }

  // Sends `signal` and waits for the process to exit; returns its exit status as
  // waitpid reports it (WIFEXITED / WTERMSIG apply). DeadlineExceeded after `timeout`.
  absl::StatusOr<int> Stop(int signal, absl::Duration timeout = absl::Seconds(10));

 private:
  StorageNodeProcess() = default;
  pid_t pid_ = -1;
  int port_ = 0;
  int stdout_fd_ = -1;
  std::string ready_line_;
};

// The storage_node binary in a Bazel test's runfiles (kvstore/storage_node), or $1 if set
// in the environment variable APR_STORAGE_NODE.
std::string StorageNodeBinary();

// A free port on 127.0.0.1 below Linux's ephemeral range (32768 and up by default), for a
// node restarted at its address: a port from the ephemeral range can meanwhile become the
// local port of some outgoing connection (even a client's reconnect attempts to it), and
// the restarted node then cannot listen. 0 when none was found.
int FreePortForRestarts();

}  // namespace apr::kvstore::testing

#endif  // APRUNTIME_KVSTORE_TESTING_STORAGE_NODE_PROCESS_H_
