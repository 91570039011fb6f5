// Shared pieces of the reliability tests (docs/RELIABILITY.md): a launched cluster on
// loopback, test certificates made with openssl at run time, child processes found by
// their parent's pid.
#ifndef APRUNTIME_TESTS_RELIABILITY_HARNESS_H_
#define APRUNTIME_TESTS_RELIABILITY_HARNESS_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cluster/process.h"

namespace apr::reliability {

// $TEST_TMPDIR, or the system's temporary directory.
std::string TmpDir();

// A test CA, a server certificate for localhost / 127.0.0.1 and a client certificate
// signed by it, and a second ("rogue") CA with its own client certificate. Made with
// the openssl command line (EC P-256, 10 years) in `dir`.
struct TestPki {
  std::string ca, server_cert, server_key, client_cert, client_key;
  std::string rogue_ca, rogue_cert, rogue_key;
};
absl::StatusOr<TestPki> MakeTestPki(const std::string& dir);

// `launch --config=<text>` with the binaries in cluster/, its output in a log file.
class Launch {
 public:
  Launch(const std::string& name, const std::string& config_text);
  ~Launch();  // SIGKILL if still running
  // The front end's gRPC port once the cluster is SERVING, or 0 (timeout, or the
  // launcher exited).
  int WaitReady(absl::Duration timeout);
  std::string Log() const;
  // The pid of the launcher's child whose command line contains `needle` ("--name=g1/0").
  std::optional<pid_t> ChildPid(const std::string& needle) const;
  cluster::Process& process() { return *process_; }
  int metrics_port() const { return metrics_port_; }

 private:
  std::string config_, ready_, log_;
  std::optional<cluster::Process> process_;
  int metrics_port_ = 0;
};

// The front end config text of a local cluster on loopback with the bundled model:
// `groups` CPU worker groups, every port 0; `extra` is appended (more top-level fields),
// `frontend_extra` goes inside frontend { }.
std::string LocalConfig(int groups, int max_batch, const std::string& extra = "",
                        const std::string& frontend_extra = "",
                        const std::string& launcher_extra = "");

// GET http://127.0.0.1:port/metrics and the value of one unlabelled metric, or -1.
double ScrapeMetric(int port, const std::string& name);

}  // namespace apr::reliability

#endif  // APRUNTIME_TESTS_RELIABILITY_HARNESS_H_
