// Llama decoder weights on the GPU in bf16 (norm weights in float32), with the fusions the
// kernels want: q, k, v projections stacked into one [(heads + 2 kv_heads) * head_dim,
// hidden] matrix, gate and up into one [2 * intermediate, hidden] matrix.
//
// Tensor parallelism (tensor_parallel.h): with tp_size > 1 the object holds one rank's
// shard and config() is the shard's geometry (ShardConfig: heads, KV heads and
// intermediate size divided by tp_size); embeddings, norms and lm_head are whole.
#ifndef APRUNTIME_BACKENDS_CUDA_CUDA_WEIGHTS_H_
#define APRUNTIME_BACKENDS_CUDA_CUDA_WEIGHTS_H_

#include <cuda_bf16.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "backends/cuda/device_buffer.h"
#include "runtime/checkpoint.h"
#include "runtime/model_config.h"

namespace apr::cuda {

struct CudaLayerWeights {
  const __nv_bfloat16* qkv = nullptr;      // [(heads + 2 kv_heads) * head_dim][hidden]
  const __nv_bfloat16* o = nullptr;        // [hidden][heads * head_dim]
  const __nv_bfloat16* gate_up = nullptr;  // [2 * intermediate][hidden]
  const __nv_bfloat16* down = nullptr;     // [hidden][intermediate]
  const float* input_norm = nullptr;       // [hidden]
  const float* post_attn_norm = nullptr;
  // Qwen2 (qkv_bias): q, k, v biases stacked like qkv's rows; null otherwise.
  const float* qkv_bias = nullptr;  // [(heads + 2 kv_heads) * head_dim]
  // Qwen3 (qk_norm): the per-head RMSNorm weights of q and k; null otherwise.
  const float* q_norm = nullptr;  // [head_dim]
  const float* k_norm = nullptr;  // [head_dim]
};

class CudaWeights {
 public:
  // Every tensor of a Hugging Face Llama checkpoint (F32, F16 or BF16), shapes checked as
  // in LoadLlamaWeightsF32, converted to bf16 with round-to-nearest-even.
  // With tp_size > 1, only rank tp_rank's shard: q/k/v rows of its heads (and their
  // biases), o_proj's matching input columns, its gate/up rows and down_proj's matching
  // input columns; q/k norm weights (per head_dim) are whole.
  static absl::StatusOr<std::unique_ptr<CudaWeights>> FromCheckpoint(const Checkpoint& ckpt,
                                                                     int tp_rank = 0,
                                                                     int tp_size = 1);
  // Random weights of the config's geometry (the benchmark): uniform with variance 1/fan_in
  // (of the whole model), norm weights (and q/k/v biases) 1. Nothing is read from disk. With
  // tp_size > 1, a shard of that geometry (its values are not a slice of the tp_size = 1 weights).
  static absl::StatusOr<std::unique_ptr<CudaWeights>> Random(const ModelConfig& config,
                                                             uint64_t seed, int tp_rank = 0,
                                                             int tp_size = 1);

  // The geometry the decoder computes with (under tensor parallelism, the shard's).
  const ModelConfig& config() const { return config_; }
  int tp_rank() const { return tp_rank_; }
  int tp_size() const { return tp_size_; }
  const __nv_bfloat16* embed() const { return embed_; }
  const __nv_bfloat16* lm_head() const { return lm_head_; }
  const float* final_norm() const { return final_norm_; }
  const CudaLayerWeights& layer(int i) const { return layers_[i]; }
  // Bytes a decode step reads: every layer matrix, the norms, and lm_head.
  int64_t StepBytes() const;
  int64_t TotalBytes() const { return static_cast<int64_t>(mats_.bytes() + norms_.bytes()); }

 private:
  static absl::StatusOr<std::unique_ptr<CudaWeights>> Allocate(const ModelConfig& config);
  ModelConfig config_;
  int tp_rank_ = 0, tp_size_ = 1;
  DeviceBuffer<__nv_bfloat16> mats_;
  DeviceBuffer<float> norms_;
  const __nv_bfloat16* embed_ = nullptr;
  const __nv_bfloat16* lm_head_ = nullptr;
  const float* final_norm_ = nullptr;
  std::vector<CudaLayerWeights> layers_;
};

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_CUDA_WEIGHTS_H_
