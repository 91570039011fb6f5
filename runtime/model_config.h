// Hugging Face config.json of Llama-family decoders: Llama 2/3, Mistral, Qwen2/2.5, Qwen3.
#ifndef APRUNTIME_RUNTIME_MODEL_CONFIG_H_
#define APRUNTIME_RUNTIME_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/dtype.h"

namespace apr {

// The config's RoPE scaling as written; runtime/rope.h turns it into frequencies.
struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3, kDynamic, kYarn, kLongRope };
  Type type = Type::kNone;
  // Every type but kNone. Yarn and LongRoPE may omit it: then max_position_embeddings /
  // original_max_position_embeddings, as transformers derives it.
  double factor = 1.0;
  // Llama-3 only.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  // Llama-3, Yarn (defaults to max_position_embeddings) and LongRoPE (also read from the
  // top-level field of that name, where Phi-3 keeps it).
  int64_t original_max_position_embeddings = 8192;
  // Yarn and LongRoPE: the cos/sin multiplier; 0 when the config leaves it to the formula.
  double attention_factor = 0;
  // Yarn only; 0 when absent (the formulas treat absent and 0 alike).
  double beta_fast = 0, beta_slow = 0, mscale = 0, mscale_all_dim = 0;
  bool truncate = true;  // Yarn: round the correction range outwards
  // LongRoPE: per-frequency divisors (head_dim / 2 each) up to and past the original length.
  std::vector<double> short_factor, long_factor;
};

// Which transformers class the checkpoint is; it decides the parts below the sizes.
enum class ModelFamily { kLlama, kMistral, kQwen2, kQwen3 };

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
  ModelFamily family = ModelFamily::kLlama;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // Llama's q/k/v/o biases (rare; accepted only when false)
  bool mlp_bias = false;        // accepted only when false
  // Qwen2: q/k/v projections carry biases (o_proj does not), as Qwen2Attention always has.
  bool qkv_bias = false;
  // Qwen3: an RMSNorm over each head's query and key (weights [head_dim]) before RoPE.
  bool qk_norm = false;
  // Mistral: a query at position p sees keys (p - sliding_window, p]; 0: every earlier key.
  int64_t sliding_window = 0;
  std::vector<int64_t> bos_token_ids;
  std::vector<int64_t> eos_token_ids;
  DType torch_dtype = DType::kBF16;

  int64_t group_size() const { return num_attention_heads / num_key_value_heads; }
};

// Parses and checks a config.json text. `source` names the file in error messages.
// Accepts both spellings of RoPE settings: `rope_theta` + `rope_scaling` (transformers 4)
// and `rope_parameters` (transformers 5). Rejects other architectures, missing or
// non-positive sizes, heads that do not divide, unknown rope types, unsupported activations,
// and every field the CPU decoder would not honour (each message names the field).
absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text, std::string_view source);

// Reads `path` and parses it.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_MODEL_CONFIG_H_
