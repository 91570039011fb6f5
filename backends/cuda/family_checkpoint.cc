#include "backends/cuda/family_checkpoint.h"

#include <cmath>
#include <random>
#include <vector>

#include "nlohmann/json.hpp"
#include "runtime/dtype.h"
#include "runtime/testing/safetensors_writer.h"
#include "runtime/testing/tiny_llama.h"

namespace apr::testutil {
namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Norm weights near 1, biases and embeddings of unit-ish size, matrices with variance
// 1 / fan_in; all rounded to bf16.
std::vector<uint16_t> Values(const TensorSpec& t, bool qk_norm, std::mt19937_64& rng) {
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  float lo = -1, hi = 1;
  if (EndsWith(t.name, "norm.weight")) {
    lo = 0.5f;
    hi = 1.5f;
  } else if (EndsWith(t.name, ".bias")) {
    lo = -0.5f;
    hi = 0.5f;
  } else if (t.shape.size() == 2 && t.name != "model.embed_tokens.weight") {
    hi = std::sqrt(3.0f / static_cast<float>(t.shape[1]));
    // Qwen3: q and k 4x too large, so that only the q/k norms give the right attention.
    if (qk_norm && (EndsWith(t.name, "q_proj.weight") || EndsWith(t.name, "k_proj.weight")))
      hi *= 4;
    lo = -hi;
  }
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<uint16_t> out(n);
  for (uint16_t& v : out) v = F32ToBf16(u(rng));
  return out;
}

}  // namespace

absl::Status WriteFamilyCheckpoint(const FamilyCheckpoint& f, const std::string& dir) {
  TinyLlama m;
  m.vocab = kFamilyVocab;
  m.hidden = 128;
  m.intermediate = 256;
  m.layers = 2;
  m.heads = 4;
  m.kv_heads = 2;
  m.head_dim = kFamilyHeadDim;
  m.dtype = DType::kBF16;
  // Mistral's tensors are Llama's.
  m.model_type = f.model_type == "mistral" ? "llama" : f.model_type;
  nlohmann::json config = nlohmann::json::parse(TinyLlamaConfig(m));
  config["max_position_embeddings"] = f.max_position_embeddings;
  if (f.model_type == "mistral") {
    config["model_type"] = "mistral";
    config["architectures"] = {"MistralForCausalLM"};
  }
  if (f.sliding_window > 0) config["sliding_window"] = f.sliding_window;
  if (!f.rope_scaling_json.empty())
    config["rope_scaling"] = nlohmann::json::parse(f.rope_scaling_json);
  if (absl::Status s = WriteFile(dir + "/config.json", config.dump(2)); !s.ok()) return s;

  std::mt19937_64 rng(f.seed);
  std::vector<TensorSpec> tensors = TinyLlamaTensors(m);
  for (TensorSpec& t : tensors) t.bytes = U16Bytes(Values(t, f.model_type == "qwen3", rng));
  return WriteFile(dir + "/model.safetensors", SafetensorsBytes(tensors));
}

std::string LongRopeScalingJson(int64_t original) {
  nlohmann::json s = {{"rope_type", "longrope"}, {"original_max_position_embeddings", original}};
  std::vector<double> short_f, long_f;
  for (int64_t i = 0; i < kFamilyHeadDim / 2; ++i) {
    const double t = static_cast<double>(i) / (kFamilyHeadDim / 2 - 1);
    short_f.push_back(1.0 + 0.5 * t);
    long_f.push_back(2.0 + 6.0 * t);
  }
  s["short_factor"] = short_f;
  s["long_factor"] = long_f;
  return s.dump();
}

}  // namespace apr::testutil
