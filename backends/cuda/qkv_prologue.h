// What Qwen2 and Qwen3 do to the q/k/v projection's output before RoPE, in place on the
// float32 rows the RoPE/append kernel reads: Qwen2's biases, then Qwen3's per-head RMSNorm
// of each query and key head (over head_dim), the CPU reference decoder's order
// (backends/cpu/cpu_decoder.cc ProjectQkv). Llama and Mistral launch nothing.
#ifndef APRUNTIME_BACKENDS_CUDA_QKV_PROLOGUE_H_
#define APRUNTIME_BACKENDS_CUDA_QKV_PROLOGUE_H_

#include <cuda_runtime.h>

namespace apr::cuda {

struct QkvPrologueArgs {
  float* qkv = nullptr;  // [n][(heads + 2 * kv_heads) * head_dim]: q, k, v
  int n = 0;
  int num_heads = 0, num_kv_heads = 0, head_dim = 0;
  // [(heads + 2 * kv_heads) * head_dim], laid out like a row; null: no biases.
  const float* bias = nullptr;
  // [head_dim] each; null: no q/k norm (both or neither).
  const float* q_norm = nullptr;
  const float* k_norm = nullptr;
  float eps = 0;
};

// Whether `a` has anything to do (a launch with nothing to do is skipped).
inline bool QkvPrologueNeeded(const QkvPrologueArgs& a) {
  return a.bias != nullptr || a.q_norm != nullptr;
}

cudaError_t LaunchQkvPrologue(const QkvPrologueArgs& a, cudaStream_t stream);

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_QKV_PROLOGUE_H_
