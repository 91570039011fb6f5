// Which configs the CUDA backend runs. The config parser accepts what the CPU reference
// decoder implements; whatever the CUDA kernels lack must fail when the model loads,
// naming the field, rather than decode silently wrong.
#ifndef APRUNTIME_BACKENDS_CUDA_MODEL_SUPPORT_H_
#define APRUNTIME_BACKENDS_CUDA_MODEL_SUPPORT_H_

#include "absl/status/status.h"
#include "runtime/model_config.h"

namespace apr::cuda {

// Unimplemented naming the config field when `c` needs a part the CUDA decoder lacks.
// Every parsed config runs today (Llama, Mistral with or without a sliding window, Qwen2,
// Qwen3; every RoPE type); the check stays the one place a new field is refused.
absl::Status CheckCudaSupportsModel(const ModelConfig& c);

// Unimplemented when `c` cannot decode with sparse attention (CudaDecoderOptions::sparse,
// max_budget_tokens, and the offload placements that need it): a sliding window, which
// the predictor's block selection does not know.
absl::Status CheckCudaSupportsSparse(const ModelConfig& c);

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_MODEL_SUPPORT_H_
