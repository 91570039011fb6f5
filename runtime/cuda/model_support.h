// Which configs the CUDA backend runs. The config parser accepts what the CPU reference
// decoder implements; the CUDA kernels implement a subset, and everything outside it must
// fail when the model loads, naming the field, rather than decode silently wrong.
#ifndef APRUNTIME_RUNTIME_CUDA_MODEL_SUPPORT_H_
#define APRUNTIME_RUNTIME_CUDA_MODEL_SUPPORT_H_

#include "absl/status/status.h"
#include "runtime/model_config.h"

namespace apr::cuda {

// Unimplemented naming the config field when `c` needs a part the CUDA decoder lacks:
// q/k/v biases (qwen2), q/k norms (qwen3), a sliding window (mistral). Every RoPE type
// runs (rope_tables.h).
absl::Status CheckCudaSupportsModel(const ModelConfig& c);

}  // namespace apr::cuda

#endif  // APRUNTIME_RUNTIME_CUDA_MODEL_SUPPORT_H_
