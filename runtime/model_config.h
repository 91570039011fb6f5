// Hugging Face config.json of Llama-family models (Llama 2/3, Mistral-style).
#ifndef APRUNTIME_RUNTIME_MODEL_CONFIG_H_
#define APRUNTIME_RUNTIME_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/dtype.h"

namespace apr {

struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3 };
  Type type = Type::kNone;
  double factor = 1.0;
  // Llama-3 only.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // defaults to num_attention_heads when absent
  int64_t head_dim = 0;             // defaults to hidden_size / num_attention_heads
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v/o biases (rare; accepted only when false)
  bool mlp_bias = false;        // accepted only when false
  std::vector<int64_t> bos_token_ids;
  std::vector<int64_t> eos_token_ids;
  DType torch_dtype = DType::kBF16;

  int64_t group_size() const { return num_attention_heads / num_key_value_heads; }
};

// Parses and checks a config.json text. `source` names the file in error messages.
// Accepts both spellings of RoPE settings: `rope_theta` + `rope_scaling` (transformers 4)
// and `rope_parameters` (transformers 5). Rejects non-Llama architectures, missing or
// non-positive sizes, heads that do not divide, unknown rope types, unsupported activations.
absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text, std::string_view source);

// Reads `path` and parses it.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_MODEL_CONFIG_H_
