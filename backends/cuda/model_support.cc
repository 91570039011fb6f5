#include "backends/cuda/model_support.h"

#include "absl/strings/str_cat.h"

namespace apr::cuda {

absl::Status CheckCudaSupportsModel(const ModelConfig& c) {
  // Every family and RoPE type the config parser accepts: q/k/v biases and q/k norms run in
  // qkv_prologue.h, the RoPE tables come from runtime/rope.h (rope_tables.h), the sliding
  // window is a mask in both attention kernels. Dynamic NTK equals the default frequencies
  // up to max_position_embeddings, which caps the CUDA decoder's context (CheckOptions).
  (void)c;
  return absl::OkStatus();
}

absl::Status CheckCudaSupportsSparse(const ModelConfig& c) {
  if (c.sliding_window > 0) {
    return absl::UnimplementedError(absl::StrCat(
        "sparse attention (and the offloaded KV cache, which needs it) with a sliding_window (",
        c.sliding_window,
        "): the predictor selects blocks without regard to the window; run this model with "
        "dense attention and the KV cache in GPU memory (docs/LOADING.md)"));
  }
  return absl::OkStatus();
}

}  // namespace apr::cuda
