// The decode step's CUDA graphs (docs/CUDA.md "Decode step (one graph)"), cached by the
// step's shape: a step replays the graph captured for its key, or captures one the
// first time the key is seen.
#ifndef APRUNTIME_BACKENDS_CUDA_STEP_GRAPH_CACHE_H_
#define APRUNTIME_BACKENDS_CUDA_STEP_GRAPH_CACHE_H_

#include <cuda_runtime.h>

#include <map>
#include <tuple>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"

namespace apr::cuda {

// What a decode step's device work depends on besides the values in its input buffers.
// Split counts and the CNN grid are bucketed by powers of two of the context, so a long
// decode captures rarely.
struct StepKey {
  int batch = 0, splits_dense = 0, splits_list = 0, predict_cols = 0, calib_cols = 0;
  bool sparse = false, any_dense = false, predict = false;
  bool recompute = false;  // the CNN recomputes (CnnRecomputes) for a sequence of the batch
  auto tie() const {
    return std::tie(batch, splits_dense, splits_list, predict_cols, calib_cols, sparse, any_dense,
                    predict, recompute);
  }
  bool operator<(const StepKey& o) const { return tie() < o.tie(); }
};

class StepGraphCache {
 public:
  StepGraphCache() = default;
  ~StepGraphCache() { Clear(); }
  StepGraphCache(const StepGraphCache&) = delete;
  StepGraphCache& operator=(const StepGraphCache&) = delete;

  // Launches the graph cached for `key` on `stream`; the first time, captures what
  // `enqueue` puts on `stream` into it (a failed capture caches nothing).
  absl::Status Run(const StepKey& key, cudaStream_t stream,
                   absl::FunctionRef<absl::Status()> enqueue);
  // Forgets every graph: a setting the step's work depends on changed.
  void Clear();

 private:
  struct Graph {
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
  };
  std::map<StepKey, Graph> graphs_;
};

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_STEP_GRAPH_CACHE_H_
