#include "runtime/testing/tiny_llama.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace apr::testutil {
namespace {

// Exact for the normal values TinyLlamaValue produces; anything else is a test bug.
uint16_t F32ToF16Exact(float f) {
  if (f == 0.0f) return std::signbit(f) ? 0x8000 : 0;
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const int exp = static_cast<int>((bits >> 23) & 0xff) - 127;
  if (exp < -14 || exp > 15 || (bits & 0x1fff) != 0) {
    throw std::logic_error("value not exactly representable as a normal half");
  }
  return static_cast<uint16_t>(((bits >> 16) & 0x8000) | ((exp + 15) << 10) |
                               ((bits >> 13) & 0x3ff));
}

std::string Encode(DType dtype, const std::vector<float>& values) {
  if (dtype == DType::kF32) return F32Bytes(values);
  std::vector<uint16_t> half(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    half[i] = dtype == DType::kBF16 ? F32ToBf16(values[i]) : F32ToF16Exact(values[i]);
  }
  return U16Bytes(half);
}

}  // namespace

float TinyLlamaValue(std::string_view name, int64_t i) {
  const size_t h = std::hash<std::string_view>()(name);
  const int64_t k = static_cast<int64_t>((h + static_cast<size_t>(i) * 7919) % 127) - 63;
  return static_cast<float>(k) / 64.0f;
}

std::string TinyLlamaConfig(const TinyLlama& m) {
  const char* dtype = m.dtype == DType::kF32   ? "float32"
                      : m.dtype == DType::kF16 ? "float16"
                                               : "bfloat16";
  const char* architecture = m.model_type == "qwen2"   ? "Qwen2ForCausalLM"
                             : m.model_type == "qwen3" ? "Qwen3ForCausalLM"
                                                       : "LlamaForCausalLM";
  nlohmann::json j = {
      {"architectures", {architecture}},
      {"model_type", m.model_type},
      {"hidden_act", "silu"},
      {"vocab_size", m.vocab},
      {"hidden_size", m.hidden},
      {"intermediate_size", m.intermediate},
      {"num_hidden_layers", m.layers},
      {"num_attention_heads", m.heads},
      {"num_key_value_heads", m.kv_heads},
      {"head_dim", m.head_dim},
      {"max_position_embeddings", 256},
      {"rms_norm_eps", 1e-5},
      {"rope_theta", 10000.0},
      {"tie_word_embeddings", m.tie_word_embeddings},
      {"bos_token_id", 1},
      {"eos_token_id", 2},
      {"torch_dtype", dtype},
  };
  return j.dump(2);
}

std::vector<TensorSpec> TinyLlamaTensors(const TinyLlama& m) {
  std::vector<TensorSpec> out;
  auto add = [&](std::string name, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> values(n);
    for (int64_t i = 0; i < n; ++i) values[i] = TinyLlamaValue(name, i);
    out.push_back({name, m.dtype, std::move(shape), Encode(m.dtype, values)});
  };
  const int64_t q = m.heads * m.head_dim, kv = m.kv_heads * m.head_dim;
  add("model.embed_tokens.weight", {m.vocab, m.hidden});
  for (int64_t l = 0; l < m.layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    add(p + "input_layernorm.weight", {m.hidden});
    add(p + "self_attn.q_proj.weight", {q, m.hidden});
    add(p + "self_attn.k_proj.weight", {kv, m.hidden});
    add(p + "self_attn.v_proj.weight", {kv, m.hidden});
    add(p + "self_attn.o_proj.weight", {m.hidden, q});
    if (m.model_type == "qwen2") {
      add(p + "self_attn.q_proj.bias", {q});
      add(p + "self_attn.k_proj.bias", {kv});
      add(p + "self_attn.v_proj.bias", {kv});
    }
    if (m.model_type == "qwen3") {
      add(p + "self_attn.q_norm.weight", {m.head_dim});
      add(p + "self_attn.k_norm.weight", {m.head_dim});
    }
    add(p + "post_attention_layernorm.weight", {m.hidden});
    add(p + "mlp.gate_proj.weight", {m.intermediate, m.hidden});
    add(p + "mlp.up_proj.weight", {m.intermediate, m.hidden});
    add(p + "mlp.down_proj.weight", {m.hidden, m.intermediate});
  }
  add("model.norm.weight", {m.hidden});
  if (m.write_lm_head) add("lm_head.weight", {m.vocab, m.hidden});
  return out;
}

absl::Status WriteTinyLlama(const TinyLlama& m, const std::string& dir) {
  absl::Status s = WriteFile(dir + "/config.json", TinyLlamaConfig(m));
  if (!s.ok()) return s;
  const std::vector<TensorSpec> tensors = TinyLlamaTensors(m);
  if (m.shards <= 1) return WriteFile(dir + "/model.safetensors", SafetensorsBytes(tensors));

  // Consecutive runs of tensors per shard, as transformers' save_pretrained does.
  nlohmann::json weight_map = nlohmann::json::object();
  size_t total = 0, next = 0;
  for (int k = 0; k < m.shards; ++k) {
    const std::string name = absl::StrFormat("model-%05d-of-%05d.safetensors", k + 1, m.shards);
    const size_t end = tensors.size() * (k + 1) / m.shards;
    std::vector<TensorSpec> part(tensors.begin() + next, tensors.begin() + end);
    for (const TensorSpec& t : part) {
      weight_map[t.name] = name;
      total += t.bytes.size();
    }
    next = end;
    s = WriteFile(dir + "/" + name, SafetensorsBytes(part));
    if (!s.ok()) return s;
  }
  nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  return WriteFile(dir + "/model.safetensors.index.json", index.dump(2));
}

}  // namespace apr::testutil
