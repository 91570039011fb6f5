// load_bench: N concurrent streaming requests (default 1,000) on loopback against a local
// cluster that it launches (CPU worker, bundled model; or --server for a running one).
// Every stream is checked against the in-process reference for its request; prints what
// was lost, duplicated or mixed up (all must be 0) and latency percentiles
// (docs/RELIABILITY.md, "Load").
//
//   bazel run -c opt //bench:load_bench -- --streams=1000
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/reliability/harness.h"
#include "tests/reliability/load_driver.h"

ABSL_FLAG(int, streams, 1000, "concurrent streaming requests");
ABSL_FLAG(int, min_tokens, 8, "shortest max_tokens of a request");
ABSL_FLAG(int, max_tokens, 16, "longest max_tokens of a request");
ABSL_FLAG(int, max_batch_size, 64, "scheduler.max_batch_size of the launched cluster");
ABSL_FLAG(double, timeout_s, 600, "deadline of each stream");
ABSL_FLAG(std::string, server, "", "front end host:port; empty: launch a local cluster");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using namespace apr::reliability;
  LoadOptions o;
  o.streams = absl::GetFlag(FLAGS_streams);
  o.min_tokens = absl::GetFlag(FLAGS_min_tokens);
  o.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  o.timeout_seconds = absl::GetFlag(FLAGS_timeout_s);
  std::string address = absl::GetFlag(FLAGS_server);
  std::unique_ptr<Launch> launch;
  if (address.empty()) {
    launch = std::make_unique<Launch>(
        "load-bench",
        LocalConfig(1, absl::GetFlag(FLAGS_max_batch_size), "",
                    absl::StrCat("limits { max_streams_per_client: ", o.streams + 16,
                                 " max_open_streams: ", o.streams + 16, " }")));
    const int port = launch->WaitReady(absl::Seconds(120));
    if (port == 0) {
      std::fprintf(stderr, "load_bench: the cluster did not start:\n%s\n", launch->Log().c_str());
      return 1;
    }
    address = absl::StrCat("127.0.0.1:", port);
  }
  auto r = RunLoad(address, o);
  if (!r.ok()) {
    std::fprintf(stderr, "load_bench: %s\n", r.status().ToString().c_str());
    return 1;
  }
  std::printf("%s\n", r->Summary().c_str());
  for (const std::string& e : r->errors) std::printf("  %s\n", e.c_str());
  const bool clean = r->ok == o.streams && r->lost == 0 && r->duplicated == 0 &&
                     r->mismatched == 0 && r->wrong_stop == 0 && r->failed == 0;
  return clean ? 0 : 1;
}
