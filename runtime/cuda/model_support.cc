#include "runtime/cuda/model_support.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace apr::cuda {
namespace {

absl::Status Refuse(const std::string& what) {
  return absl::UnimplementedError(absl::StrCat(
      "the CUDA backend does not implement ", what,
      "; the CPU reference decoder runs this model (docs/LOADING.md lists what runs where)"));
}

}  // namespace

absl::Status CheckCudaSupportsModel(const ModelConfig& c) {
  if (c.qkv_bias) return Refuse("q/k/v projection biases (model_type qwen2)");
  if (c.qk_norm) return Refuse("q_norm/k_norm (model_type qwen3)");
  if (c.sliding_window > 0) {
    return Refuse(absl::StrCat("sliding_window (", c.sliding_window, " < max_position_embeddings ",
                               c.max_position_embeddings, ")"));
  }
  // Dynamic NTK equals the default frequencies up to max_position_embeddings, which caps
  // the CUDA decoder's context (CheckOptions), so RopeInverseFrequencies is exact for it.
  switch (c.rope_scaling.type) {
    case RopeScaling::Type::kYarn:
      return Refuse("rope_scaling type \"yarn\"");
    case RopeScaling::Type::kLongRope:
      return Refuse("rope_scaling type \"longrope\"");
    default:
      return absl::OkStatus();
  }
}

}  // namespace apr::cuda
