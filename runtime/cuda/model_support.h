// Which configs the CUDA backend runs. The config parser accepts what the CPU reference
// decoder implements; the CUDA kernels implement a subset, and everything outside it must
// fail when the model loads, naming the field, rather than decode silently wrong.
#ifndef APRUNTIME_RUNTIME_CUDA_MODEL_SUPPORT_H_
#define APRUNTIME_RUNTIME_CUDA_MODEL_SUPPORT_H_

#include "absl/status/status.h"
#include "runtime/model_config.h"

namespace apr::cuda {

// Unimplemented naming the config field when `c` needs a part the CUDA decoder lacks:
// a sliding window (mistral). Qwen2's q/k/v biases and Qwen3's q/k norms run
// (qkv_prologue.h), and every RoPE type (rope_tables.h).
absl::Status CheckCudaSupportsModel(const ModelConfig& c);

}  // namespace apr::cuda

#endif  // APRUNTIME_RUNTIME_CUDA_MODEL_SUPPORT_H_
