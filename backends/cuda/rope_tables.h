// The RoPE frequencies the CUDA decoder's kernels read, from runtime/rope.h so that they
// are the CPU reference decoder's: one table (every type whose frequencies do not depend
// on the context within max_position_embeddings, the decoder's limit: default, linear,
// llama3, dynamic NTK, yarn) or LongRoPE's two (short factors up to
// original_max_position_embeddings, long past it), and the cos/sin attention factor.
#ifndef APRUNTIME_BACKENDS_CUDA_ROPE_TABLES_H_
#define APRUNTIME_BACKENDS_CUDA_ROPE_TABLES_H_

#include <cstdint>

#include "absl/status/status.h"
#include "backends/cuda/device_buffer.h"
#include "backends/cuda/rope_append.h"
#include "runtime/model_config.h"

namespace apr::cuda {

class RopeTables {
 public:
  // Uploads the tables of `c` (fill_byte: CudaDecoderOptions::debug_fill_byte).
  absl::Status Init(const ModelConfig& c, int fill_byte);
  // A decode step: each token picks its table by its own context (position + 1), as
  // RopeForContext does for a one-token forward pass.
  void ForDecode(RopeAppendArgs* ra) const;
  // A prefill pass whose tokens end at `context_len`: one table for all of them, chosen by
  // the pass's end as the CPU decoder's Forward (and transformers) choose it.
  void ForPrefill(int64_t context_len, RopeAppendArgs* ra) const;

 private:
  DeviceBuffer<float> inv_;  // [tables][head_dim / 2]: short (or the only one), then long
  int64_t half_ = 0;
  int64_t long_after_ = 0;  // > 0: LongRoPE's original_max_position_embeddings
  float attention_factor_ = 1.0f;
};

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_ROPE_TABLES_H_
