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
  if (c.sliding_window > 0) {
    return Refuse(absl::StrCat("sliding_window (", c.sliding_window, " < max_position_embeddings ",
                               c.max_position_embeddings, ")"));
  }
  // Every RoPE type runs (rope_tables.h): dynamic NTK equals the default frequencies up to
  // max_position_embeddings, which caps the CUDA decoder's context (CheckOptions).
  return absl::OkStatus();
}

}  // namespace apr::cuda
