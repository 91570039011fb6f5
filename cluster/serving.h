// What every cluster process does around its servers: report its ports to the launcher
// and wait for the signal that stops it.
#ifndef APRUNTIME_CLUSTER_SERVING_H_
#define APRUNTIME_CLUSTER_SERVING_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace apr::cluster {

// Writes "name=value" lines to `path` atomically (a temporary file, then rename), so a
// reader never sees half a file. The launcher passes --ready_file and reads the ports
// (grpc_port, metrics_port) a process picked when its config said port 0.
absl::Status WriteReadyFile(const std::string& path, const std::map<std::string, int>& values);

// Reads such a file; NotFound until it exists.
absl::StatusOr<std::map<std::string, int>> ReadReadyFile(const std::string& path);

// Blocks SIGINT and SIGTERM in the calling thread and the threads it starts afterwards,
// so that WaitForTerminationSignal() receives them. Call first thing in main().
void BlockTerminationSignals();

// Waits for SIGINT or SIGTERM and returns its number.
int WaitForTerminationSignal();

}  // namespace apr::cluster

#endif  // APRUNTIME_CLUSTER_SERVING_H_
