#include "backends/cuda/step_graph_cache.h"

#include "backends/cuda/cuda_check.h"

namespace apr::cuda {

absl::Status StepGraphCache::Run(const StepKey& key, cudaStream_t stream,
                                 absl::FunctionRef<absl::Status()> enqueue) {
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {
    Graph g;
    APR_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    absl::Status s = enqueue();
    // The capture must end even when enqueueing failed, or the stream stays capturing.
    cudaError_t e = cudaStreamEndCapture(stream, &g.graph);
    if (!s.ok()) {
      if (g.graph != nullptr) cudaGraphDestroy(g.graph);
      return s;
    }
    APR_CUDA_RETURN_IF_ERROR(e);
    APR_CUDA_RETURN_IF_ERROR(cudaGraphInstantiate(&g.exec, g.graph, 0));
    it = graphs_.emplace(key, g).first;
  }
  APR_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(it->second.exec, stream));
  return absl::OkStatus();
}

void StepGraphCache::Clear() {
  for (auto& [key, g] : graphs_) {
    if (g.exec != nullptr) cudaGraphExecDestroy(g.exec);
    if (g.graph != nullptr) cudaGraphDestroy(g.graph);
  }
  graphs_.clear();
}

}  // namespace apr::cuda
