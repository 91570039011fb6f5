// Small random checkpoints of each model family and RoPE variant the CUDA decoder runs,
// for tests that compare it with the CPU reference decoder on the very same weights:
// bf16 values (both decoders then read identical numbers), scaled so that activations
// stay near unit size and bf16 rounding, not saturated softmaxes, sets the difference.
#ifndef APRUNTIME_BACKENDS_CUDA_FAMILY_CHECKPOINT_H_
#define APRUNTIME_BACKENDS_CUDA_FAMILY_CHECKPOINT_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace apr::testutil {

struct FamilyCheckpoint {
  // llama, mistral, qwen2 (q/k/v biases) or qwen3 (q/k norms).
  std::string model_type = "llama";
  int64_t max_position_embeddings = 512;
  int64_t sliding_window = 0;  // > 0: written (mistral)
  // A rope_scaling object as JSON text, or empty for none.
  std::string rope_scaling_json;
  uint64_t seed = 1;
};

// Geometry shared by every family checkpoint: 2 layers, 4 query heads over 2 KV heads of
// head_dim 64 (the tensor-core prefill's size), hidden 128, vocabulary 128.
inline constexpr int64_t kFamilyVocab = 128;
inline constexpr int64_t kFamilyHeadDim = 64;

// Writes config.json and model.safetensors into `dir`.
absl::Status WriteFamilyCheckpoint(const FamilyCheckpoint& f, const std::string& dir);

// A LongRoPE rope_scaling object for kFamilyHeadDim: short factors in [1, 1.5], long ones
// in [2, 8], original length `original`.
std::string LongRopeScalingJson(int64_t original);

}  // namespace apr::testutil

#endif  // APRUNTIME_BACKENDS_CUDA_FAMILY_CHECKPOINT_H_
