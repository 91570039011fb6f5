// Starts every process a cluster config names on this host (storage nodes, then workers,
// then the front end), waits until the front end's Health says SERVING, and stops them
// in the reverse order: SIGTERM, then SIGKILL after the config's stop timeout.
//
// Process kinds are generic: each kind has a binary and a way to turn its config entry
// into flags (ProcessSpec); adding a kind touches PlanProcesses only.
#ifndef APRUNTIME_CLUSTER_LAUNCHER_H_
#define APRUNTIME_CLUSTER_LAUNCHER_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cluster/config.h"
#include "cluster/process.h"

namespace apr::cluster {

// One process to start.
struct ProcessSpec {
  std::string kind;  // "storage_node", "worker", "frontend"
  std::string name;  // "kv0", "g0/1", "frontend"
  std::vector<std::string> flags;
  // How readiness shows: the process writes this ready file (grpc_port, metrics_port);
  // empty for kinds that do not support one (then the fixed gRPC port must accept).
  std::string ready_file;
  std::string host;   // where its gRPC port listens
  int grpc_port = 0;  // as configured (0: reported in the ready file)
};

struct LauncherOptions {
  // Directory of the default binaries (frontend, worker; storage_node is looked up at
  // ../kvstore/storage_node from it, Bazel's layout). Config launcher.binaries wins.
  std::string bin_dir;
  // Scratch directory for ready files and the resolved config; made if empty.
  std::string run_dir;
};

class Launcher {
 public:
  Launcher(ClusterConfig config, LauncherOptions options);
  ~Launcher();  // Stop()

  // Starts everything and waits for SERVING. On error the processes already started
  // are stopped and the message names the process and how it ended.
  absl::Status Start();
  // Only the first phase of Start(): the config's storage nodes, each waited for through
  // its ready file (so port 0 works); their picked ports go into the config the front
  // end reads. Start() afterwards goes on from there. For tests and tools.
  absl::Status StartStorageNodes();
  // host:port of each storage node, ports as picked (after StartStorageNodes).
  std::vector<std::string> storage_node_addresses() const;
  // Returns when a signal in `signals` arrives (the number) or a process exits on its
  // own (-1; see failure()). Signals must be blocked (BlockTerminationSignals).
  int WaitForSignalOrExit();
  // Stops everything; returns an error naming processes that had to be killed or that
  // exited with a non-zero status.
  absl::Status Stop();

  // The front end's gRPC and metrics addresses, valid after Start().
  const std::string& frontend_address() const { return frontend_address_; }
  const std::string& metrics_address() const { return metrics_address_; }
  // host:port and port of the OpenAI HTTP API; empty and 0 when the config has none.
  const std::string& openai_address() const { return openai_address_; }
  int openai_port() const { return openai_port_; }
  int frontend_port() const { return frontend_port_; }
  int metrics_port() const { return metrics_port_; }
  const std::string& failure() const { return failure_; }

  // The processes the config asks for, in start order (exposed for tests).
  absl::StatusOr<std::vector<ProcessSpec>> PlanProcesses(const std::string& run_dir) const;
  // ClusterConfig.storage_security as a storage node's (`node`) or a worker's flags.
  void AddStorageSecurityFlags(bool node, std::vector<std::string>* flags) const;
  // The binary for a kind.
  std::string BinaryFor(const std::string& kind) const;

 private:
  struct Running {
    ProcessSpec spec;
    Process process;
    std::map<std::string, int> ports;  // from the ready file
  };
  // Sets the children's environment, makes the run directory and the plan (once).
  absl::Status Prepare();
  // Starts every planned process of `kind` and waits until each is ready.
  absl::Status StartKind(const std::string& kind);
  absl::Status StartOne(ProcessSpec spec);
  // Waits until `r` is ready or `deadline`; fails if it exits first.
  absl::Status AwaitReady(Running& r, absl::Time deadline);
  absl::Status AwaitServing(Running& frontend, absl::Time deadline);
  // Fills the reported ports into the config the front end reads.
  void ResolvePorts();

  ClusterConfig config_;
  LauncherOptions options_;
  bool own_run_dir_ = false;
  std::vector<std::unique_ptr<Running>> running_;
  std::string frontend_address_, metrics_address_, openai_address_, failure_;
  int frontend_port_ = 0, metrics_port_ = 0, openai_port_ = 0;
  bool stopped_ = false;
  bool storage_started_ = false;
  std::optional<std::vector<ProcessSpec>> plan_;
  absl::Time deadline_;
};

}  // namespace apr::cluster

#endif  // APRUNTIME_CLUSTER_LAUNCHER_H_
