// Many concurrent streaming Generate calls against one front end, each request distinct
// (prompt, seed, length), every stream checked against the in-process reference for its
// request: nothing lost, duplicated or mixed up. Used by tests/reliability:load_test
// (200 streams, CI) and bench:load_bench (1,000 streams, docs/RELIABILITY.md).
#ifndef APRUNTIME_TESTS_RELIABILITY_LOAD_DRIVER_H_
#define APRUNTIME_TESTS_RELIABILITY_LOAD_DRIVER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "rpc/generation/v1/generation.pb.h"

namespace apr::reliability {

struct LoadOptions {
  int streams = 200;
  int min_tokens = 8;   // request i asks for min_tokens + i % (max - min + 1)
  int max_tokens = 16;
  double timeout_seconds = 300;  // per stream (gRPC deadline)
  int channels = 8;              // client connections the streams are spread over
  std::string model_dir = "models/apr-tiny";
};

struct LoadReport {
  int streams = 0;
  int ok = 0;            // ended with stats and a clean status
  int failed = 0;        // ended with an error status
  int mismatched = 0;    // tokens differ from the reference
  int lost = 0;          // ended without stats or with fewer tokens than the stats say
  int duplicated = 0;    // a request id seen twice, or a stream carrying another's id
  int wrong_stop = 0;    // stop reason differs from the reference
  int64_t tokens = 0;    // tokens streamed, all streams
  double wall_seconds = 0;
  // Percentiles in seconds: time to first token and total latency, from the client.
  double ttft_p50 = 0, ttft_p90 = 0, ttft_p95 = 0, ttft_p99 = 0, ttft_max = 0;
  double total_p50 = 0, total_p90 = 0, total_p95 = 0, total_p99 = 0, total_max = 0;
  std::vector<std::string> errors;  // the first few problems, for messages
  std::string Summary() const;
};

// The i-th request.
::apr::generation::v1::GenerateRequest LoadRequest(int i, const LoadOptions& o);

// Runs every request concurrently against `address` (one thread per stream) and checks
// each against the reference, computed in this process with the CPU decoder under the
// same scheduler (batched results equal one-at-a-time ones, tests/runtime:scheduler_test).
absl::StatusOr<LoadReport> RunLoad(const std::string& address, const LoadOptions& o);

}  // namespace apr::reliability

#endif  // APRUNTIME_TESTS_RELIABILITY_LOAD_DRIVER_H_
