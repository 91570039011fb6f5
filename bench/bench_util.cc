#include "bench/bench_util.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace apr::bench {

ModelConfig Llama31_8B(int64_t max_positions, int64_t layers) {
  ModelConfig c;
  c.vocab_size = 128256;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.head_dim = 128;
  c.max_position_embeddings = max_positions;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000;
  c.rope_scaling.type = RopeScaling::Type::kLlama3;
  c.rope_scaling.factor = 8;
  c.rope_scaling.low_freq_factor = 1;
  c.rope_scaling.high_freq_factor = 4;
  c.rope_scaling.original_max_position_embeddings = 8192;
  return c;
}

std::vector<int> PositiveInts(const std::string& flag, const std::string& list) {
  std::vector<int> v;
  for (absl::string_view p : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    int x;
    if (!absl::SimpleAtoi(p, &x) || x <= 0) {
      std::fprintf(stderr, "--%s: \"%s\" is not a positive integer\n", flag.c_str(),
                   std::string(p).c_str());
      std::exit(2);
    }
    v.push_back(x);
  }
  return v;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace apr::bench
