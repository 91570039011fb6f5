// The KV-offload rows of decode_step_bench (--offload): the real CudaDecoder step at
// Llama-3.1-8B geometry with
//   (a) the full cache offloaded and moved to the GPU every step (a budget covering the
//       whole context, no block reuse: every block gathered from the tier per step),
//   (b) predicted sparse offload with the GPU block cache and cross-token prefetch,
//   (c) the same sparse attention with the whole cache resident on the GPU,
// plus the link and the gather kernel measured in the same run, and (b) from a storage
// node process over UCX. docs/PERFORMANCE.md "Storage tier -> GPU machine".
#ifndef APRUNTIME_BENCH_OFFLOAD_ROWS_H_
#define APRUNTIME_BENCH_OFFLOAD_ROWS_H_

#include <memory>
#include <string>

#include "backends/cuda/cuda_weights.h"

namespace apr::cuda {

// Runs the offload table with `weights` (random, Llama-3.1-8B geometry, max positions large
// enough for the contexts); returns the Markdown it printed last (`preamble` first). With
// `out_path`, the table so far is written there after every row.
std::string RunOffloadRows(std::shared_ptr<const CudaWeights> weights, const std::string& preamble,
                           const std::string& out_path);

}  // namespace apr::cuda

#endif  // APRUNTIME_BENCH_OFFLOAD_ROWS_H_
