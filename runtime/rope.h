// Rotary position embedding tables, computed as transformers computes them (float32
// frequencies and angles), so positions thousands of tokens in match the reference.
#ifndef APRUNTIME_RUNTIME_ROPE_H_
#define APRUNTIME_RUNTIME_ROPE_H_

#include <cstdint>
#include <vector>

#include "runtime/model_config.h"

namespace apr {

// The RoPE of one forward pass: head_dim / 2 inverse frequencies and the factor both cos
// and sin are multiplied by (transformers' attention_scaling: 1 except yarn, longrope).
struct RopeParams {
  std::vector<float> inv_freq;
  float attention_factor = 1.0f;
};

// RoPE for a forward pass that ends at `context_len` tokens (its last position + 1), as
// transformers' dynamic_rope_update decides per forward call: LongRoPE takes the long
// factors past original_max_position_embeddings, the short ones up to it; dynamic NTK
// raises the base past max_position_embeddings (at or below it, the default frequencies).
// Keys already cached keep the rotation they were given, as in transformers' KV cache.
RopeParams RopeForContext(const ModelConfig& config, int64_t context_len);

// Inverse frequencies for contexts within the original length (RopeForContext(config,
// 1).inv_freq): exact for every type whose attention factor is 1 as long as the context
// stays within max_position_embeddings (the CUDA decoder's limit).
std::vector<float> RopeInverseFrequencies(const ModelConfig& config);

// cos/sin of position * inv_freq (times `scale`) for positions [begin, end), laid out
// [pos][head_dim / 2].
struct RopeTable {
  int64_t begin = 0;
  int64_t half_dim = 0;
  std::vector<float> cos, sin;
};
RopeTable MakeRopeTable(const std::vector<float>& inv_freq, int64_t begin, int64_t end,
                        float scale = 1.0f);

// Rotates `x` ([n_vectors][head_dim], one position) in place, "rotate_half" layout: the
// first half pairs with the second half, as in transformers' Llama.
void ApplyRope(const RopeTable& table, int64_t position, int64_t n_vectors, int64_t head_dim,
               float* x);

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_ROPE_H_
