#include "runtime/llama_weights.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace apr {
namespace {

absl::Status Read(const Checkpoint& ckpt, const std::string& name, std::vector<int64_t> shape,
                  std::vector<float>* out) {
  absl::StatusOr<std::vector<float>> v = ckpt.ReadF32(name, shape);
  if (!v.ok()) return v.status();
  *out = *std::move(v);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LlamaWeights> LoadLlamaWeightsF32(const Checkpoint& ckpt) {
  const ModelConfig& c = ckpt.config();
  const int64_t hidden = c.hidden_size, inter = c.intermediate_size;
  const int64_t q_dim = c.num_attention_heads * c.head_dim;
  const int64_t kv_dim = c.num_key_value_heads * c.head_dim;

  LlamaWeights w;
  w.config = c;
  absl::Status s = Read(ckpt, "model.embed_tokens.weight", {c.vocab_size, hidden}, &w.embed_tokens);
  if (!s.ok()) return s;

  struct LayerTensor {
    const char* suffix;
    std::vector<int64_t> shape;
    std::vector<float> LlamaLayerWeights::*field;
  };
  std::vector<LayerTensor> layer_tensors = {
      {"input_layernorm.weight", {hidden}, &LlamaLayerWeights::input_norm},
      {"self_attn.q_proj.weight", {q_dim, hidden}, &LlamaLayerWeights::q_proj},
      {"self_attn.k_proj.weight", {kv_dim, hidden}, &LlamaLayerWeights::k_proj},
      {"self_attn.v_proj.weight", {kv_dim, hidden}, &LlamaLayerWeights::v_proj},
      {"self_attn.o_proj.weight", {hidden, q_dim}, &LlamaLayerWeights::o_proj},
      {"post_attention_layernorm.weight", {hidden}, &LlamaLayerWeights::post_attn_norm},
      {"mlp.gate_proj.weight", {inter, hidden}, &LlamaLayerWeights::gate_proj},
      {"mlp.up_proj.weight", {inter, hidden}, &LlamaLayerWeights::up_proj},
      {"mlp.down_proj.weight", {hidden, inter}, &LlamaLayerWeights::down_proj},
  };
  if (c.qkv_bias) {
    layer_tensors.push_back({"self_attn.q_proj.bias", {q_dim}, &LlamaLayerWeights::q_bias});
    layer_tensors.push_back({"self_attn.k_proj.bias", {kv_dim}, &LlamaLayerWeights::k_bias});
    layer_tensors.push_back({"self_attn.v_proj.bias", {kv_dim}, &LlamaLayerWeights::v_bias});
  }
  if (c.qk_norm) {
    layer_tensors.push_back({"self_attn.q_norm.weight", {c.head_dim}, &LlamaLayerWeights::q_norm});
    layer_tensors.push_back({"self_attn.k_norm.weight", {c.head_dim}, &LlamaLayerWeights::k_norm});
  }
  w.layers.resize(c.num_hidden_layers);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string prefix = absl::StrCat("model.layers.", i, ".");
    for (const LayerTensor& t : layer_tensors) {
      s = Read(ckpt, prefix + t.suffix, t.shape, &(w.layers[i].*t.field));
      if (!s.ok()) return s;
    }
  }

  s = Read(ckpt, "model.norm.weight", {hidden}, &w.final_norm);
  if (!s.ok()) return s;
  // Tied: one matrix for both ends, so a stored lm_head.weight is not read.
  if (c.tie_word_embeddings) {
    w.lm_head = w.embed_tokens;
  } else {
    s = Read(ckpt, "lm_head.weight", {c.vocab_size, hidden}, &w.lm_head);
    if (!s.ok()) return s;
  }
  return w;
}

}  // namespace apr
