// Rotary position embedding tables, computed as transformers computes them (float32
// frequencies and angles), so positions thousands of tokens in match the reference.
#ifndef APRUNTIME_RUNTIME_ROPE_H_
#define APRUNTIME_RUNTIME_ROPE_H_

#include <cstdint>
#include <vector>

#include "runtime/model_config.h"

namespace apr {

// Inverse frequencies, head_dim / 2 of them, with the config's rope scaling applied
// (default, linear, Llama-3).
std::vector<float> RopeInverseFrequencies(const ModelConfig& config);

// cos/sin of position * inv_freq for positions [begin, end), laid out [pos][head_dim / 2].
struct RopeTable {
  int64_t begin = 0;
  int64_t half_dim = 0;
  std::vector<float> cos, sin;
};
RopeTable MakeRopeTable(const std::vector<float>& inv_freq, int64_t begin, int64_t end);

// Rotates `x` ([n_vectors][head_dim], one position) in place, "rotate_half" layout: the
// first half pairs with the second half, as in transformers' Llama.
void ApplyRope(const RopeTable& table, int64_t position, int64_t n_vectors, int64_t head_dim,
               float* x);

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_ROPE_H_
