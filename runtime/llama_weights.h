// Llama-family decoder weights in float32 on the host: what the CPU reference backend runs
// on. Tensor names follow transformers' LlamaForCausalLM
// ("model.layers.N.self_attn.q_proj.weight"); Qwen2 adds q/k/v_proj.bias, Qwen3
// self_attn.q_norm/k_norm.weight.
#ifndef APRUNTIME_RUNTIME_LLAMA_WEIGHTS_H_
#define APRUNTIME_RUNTIME_LLAMA_WEIGHTS_H_

#include <vector>

#include "absl/status/statusor.h"
#include "runtime/checkpoint.h"
#include "runtime/model_config.h"

namespace apr {

// Row-major matrices as PyTorch stores nn.Linear weights: [out_features, in_features].
struct LlamaLayerWeights {
  std::vector<float> input_norm;      // [hidden]
  std::vector<float> q_proj;          // [heads * head_dim, hidden]
  std::vector<float> k_proj;          // [kv_heads * head_dim, hidden]
  std::vector<float> v_proj;          // [kv_heads * head_dim, hidden]
  std::vector<float> o_proj;          // [hidden, heads * head_dim]
  std::vector<float> post_attn_norm;  // [hidden]
  std::vector<float> gate_proj;       // [intermediate, hidden]
  std::vector<float> up_proj;         // [intermediate, hidden]
  std::vector<float> down_proj;       // [hidden, intermediate]
  // Empty unless config.qkv_bias.
  std::vector<float> q_bias;  // [heads * head_dim]
  std::vector<float> k_bias;  // [kv_heads * head_dim]
  std::vector<float> v_bias;  // [kv_heads * head_dim]
  // Empty unless config.qk_norm: one RMSNorm weight shared by every head.
  std::vector<float> q_norm;  // [head_dim]
  std::vector<float> k_norm;  // [head_dim]
};

struct LlamaWeights {
  ModelConfig config;
  std::vector<float> embed_tokens;  // [vocab, hidden]
  std::vector<LlamaLayerWeights> layers;
  std::vector<float> final_norm;  // [hidden]
  std::vector<float> lm_head;     // [vocab, hidden]; a copy of embed_tokens when tied
};

// Loads every tensor with its shape checked against the config. A tied model may omit
// lm_head.weight (one it has is ignored: a tied model uses the embedding for both, as
// transformers makes them one parameter); an untied one must have it.
absl::StatusOr<LlamaWeights> LoadLlamaWeightsF32(const Checkpoint& ckpt);

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_LLAMA_WEIGHTS_H_
