// A child process the launcher started: its own process group (a terminal's Ctrl-C
// reaches only the launcher, which decides the order of stopping), SIGTERM if the
// launcher dies, default signal handling restored.
#ifndef APRUNTIME_CLUSTER_PROCESS_H_
#define APRUNTIME_CLUSTER_PROCESS_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace apr::cluster {

class Process {
 public:
  // Starts argv[0] (a path) with the given arguments; stdout and stderr are inherited.
  static absl::StatusOr<Process> Start(const std::vector<std::string>& argv);

  pid_t pid() const { return pid_; }
  // Sends `sig` unless the process has been reaped.
  void Signal(int sig);
  // Reaps the process if it has exited; returns its wait status then.
  std::optional<int> Poll();
  // Waits up to `timeout` for it to exit.
  std::optional<int> Wait(absl::Duration timeout);
  bool exited() const { return status_.has_value(); }

 private:
  explicit Process(pid_t pid) : pid_(pid) {}
  pid_t pid_;
  std::optional<int> status_;
};

// "exited with status 3", "was killed by signal 9 (Killed)".
std::string DescribeWaitStatus(int status);

}  // namespace apr::cluster

#endif  // APRUNTIME_CLUSTER_PROCESS_H_
