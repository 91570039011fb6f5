// The rows of kvstore_gpu_bench (kvstore_gpu_bench.cc): one per configuration run, what it
// measured, and the Markdown table of them printed at the end.
#ifndef APRUNTIME_BENCH_KVSTORE_GPU_ROWS_H_
#define APRUNTIME_BENCH_KVSTORE_GPU_ROWS_H_

#include <cstdint>
#include <string>
#include <vector>

namespace apr::bench {

// One configuration: context (tokens), batch, mode 'a', 'b' or 'c', churn, and whether
// the blocks are in a storage node (remote (b)).
struct Config {
  int64_t ctx = 0;
  int batch = 0;
  char mode = 'b';
  double churn = 0;
  bool remote = false;
};

// What one configuration measured, per decode step.
struct Result {
  double ms_per_step = 0;
  double fetched_mib_per_step = 0;
  double stalled_layers_per_step = 0;  // layers whose attention waited for its fetch
  double stall_ms_per_step = 0;        // GPU time the compute stream spent waiting
  std::string note;
};

// One configuration's row of the results table.
struct Row {
  Config c;
  Result r;
  std::string error;
};

// Prints the results table, one line per row in the order run; remote rows name
// `remote_tls` (--remote_tls). Ratios compare with the local (a) and (c) rows.
void PrintRows(const std::vector<Row>& rows, const std::string& remote_tls);

}  // namespace apr::bench

#endif  // APRUNTIME_BENCH_KVSTORE_GPU_ROWS_H_
