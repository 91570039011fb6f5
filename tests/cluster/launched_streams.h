// Greedy streams through a cluster the launch binary starts from a config text: what the
// sharded and replicated config tests compare against the same config with one node.
#ifndef APRUNTIME_TESTS_CLUSTER_LAUNCHED_STREAMS_H_
#define APRUNTIME_TESTS_CLUSTER_LAUNCHED_STREAMS_H_

#include <cstdint>
#include <string>
#include <vector>

namespace apr::cluster::testing {

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

#endif  // APRUNTIME_TESTS_CLUSTER_LAUNCHED_STREAMS_H_
