// Writes a Llama checkpoint with random bf16 weights in Hugging Face layout (config.json +
// model.safetensors, optionally a random predictor.safetensors), for tests that need a
// model larger than the bundled one, e.g. tensor parallelism against TP = 1 at a bigger
// geometry (tests/cluster:tp_worker_test). Values: uniform with variance 1 / fan_in
// (embeddings variance 1, lm_head `--lm_head_scale` times 1 / hidden), norms 1.
//
//   make_random_llama --out=/tmp/random-llama --hidden=2048 --heads=16 --kv_heads=4
//     --head_dim=128 --intermediate=5632 --layers=4 --vocab=16384 [--predictor]
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "runtime/dtype.h"
#include "runtime/testing/safetensors_writer.h"

ABSL_FLAG(std::string, out, "", "model folder to write (created)");
ABSL_FLAG(int64_t, hidden, 2048, "hidden_size");
ABSL_FLAG(int64_t, heads, 16, "num_attention_heads");
ABSL_FLAG(int64_t, kv_heads, 4, "num_key_value_heads");
ABSL_FLAG(int64_t, head_dim, 128, "head_dim");
ABSL_FLAG(int64_t, intermediate, 5632, "intermediate_size");
ABSL_FLAG(int64_t, layers, 4, "num_hidden_layers");
ABSL_FLAG(int64_t, vocab, 16384, "vocab_size");
ABSL_FLAG(int64_t, max_positions, 2048, "max_position_embeddings");
ABSL_FLAG(double, lm_head_scale, 4.0, "lm_head standard deviation x sqrt(hidden)");
ABSL_FLAG(uint64_t, seed, 1, "random seed");
ABSL_FLAG(bool, predictor, false, "also write a random predictor.safetensors");

namespace apr::tools {
namespace {

using testutil::TensorSpec;

uint64_t SplitMix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [-a, a): standard deviation a / sqrt(3).
std::vector<float> Uniform(int64_t n, float stddev, uint64_t& seed) {
  std::vector<float> v(n);
  const float a = stddev * std::sqrt(3.0f);
  for (float& x : v) {
    const float u = static_cast<float>(SplitMix(seed) >> 40) / static_cast<float>(1 << 24);
    x = (2 * u - 1) * a;
  }
  return v;
}

TensorSpec Bf16(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& v) {
  std::vector<uint16_t> bits(v.size());
  for (size_t i = 0; i < v.size(); ++i) bits[i] = F32ToBf16(v[i]);
  return {name, DType::kBF16, std::move(shape), testutil::U16Bytes(bits)};
}

TensorSpec F32(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& v) {
  return {name, DType::kF32, std::move(shape), testutil::F32Bytes(v)};
}

int Main() {
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    std::fprintf(stderr, "make_random_llama: --out is required\n");
    return 2;
  }
  const int64_t h = absl::GetFlag(FLAGS_hidden), nh = absl::GetFlag(FLAGS_heads);
  const int64_t nkv = absl::GetFlag(FLAGS_kv_heads), hd = absl::GetFlag(FLAGS_head_dim);
  const int64_t inter = absl::GetFlag(FLAGS_intermediate), L = absl::GetFlag(FLAGS_layers);
  const int64_t V = absl::GetFlag(FLAGS_vocab);
  uint64_t seed = absl::GetFlag(FLAGS_seed);
  std::filesystem::create_directories(out);
  const std::string config = absl::StrCat(
      "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
      "  \"vocab_size\": ",
      V, ",\n  \"hidden_size\": ", h, ",\n  \"intermediate_size\": ", inter,
      ",\n  \"num_hidden_layers\": ", L, ",\n  \"num_attention_heads\": ", nh,
      ",\n  \"num_key_value_heads\": ", nkv, ",\n  \"head_dim\": ", hd,
      ",\n  \"hidden_act\": \"silu\",\n  \"max_position_embeddings\": ",
      absl::GetFlag(FLAGS_max_positions),
      ",\n  \"rms_norm_eps\": 1e-05,\n  \"rope_theta\": 500000.0,\n  \"rope_scaling\": null,\n"
      "  \"attention_bias\": false,\n  \"mlp_bias\": false,\n  \"tie_word_embeddings\": false,\n"
      "  \"bos_token_id\": 0,\n  \"eos_token_id\": 1,\n  \"torch_dtype\": \"bfloat16\"\n}\n");
  if (auto s = testutil::WriteFile(out + "/config.json", config); !s.ok()) {
    std::fprintf(stderr, "make_random_llama: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  const auto inv = [](int64_t fan_in) { return 1.0f / std::sqrt(static_cast<float>(fan_in)); };
  std::vector<TensorSpec> t;
  t.push_back(Bf16("model.embed_tokens.weight", {V, h}, Uniform(V * h, 1.0f, seed)));
  const std::vector<float> ones(h, 1.0f);
  for (int64_t i = 0; i < L; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    t.push_back(
        Bf16(p + "self_attn.q_proj.weight", {nh * hd, h}, Uniform(nh * hd * h, inv(h), seed)));
    t.push_back(
        Bf16(p + "self_attn.k_proj.weight", {nkv * hd, h}, Uniform(nkv * hd * h, inv(h), seed)));
    t.push_back(
        Bf16(p + "self_attn.v_proj.weight", {nkv * hd, h}, Uniform(nkv * hd * h, inv(h), seed)));
    t.push_back(Bf16(p + "self_attn.o_proj.weight", {h, nh * hd},
                     Uniform(h * nh * hd, inv(nh * hd), seed)));
    t.push_back(Bf16(p + "mlp.gate_proj.weight", {inter, h}, Uniform(inter * h, inv(h), seed)));
    t.push_back(Bf16(p + "mlp.up_proj.weight", {inter, h}, Uniform(inter * h, inv(h), seed)));
    t.push_back(Bf16(p + "mlp.down_proj.weight", {h, inter}, Uniform(h * inter, inv(inter), seed)));
    t.push_back(Bf16(p + "input_layernorm.weight", {h}, ones));
    t.push_back(Bf16(p + "post_attention_layernorm.weight", {h}, ones));
  }
  t.push_back(Bf16("model.norm.weight", {h}, ones));
  t.push_back(
      Bf16("lm_head.weight", {V, h},
           Uniform(V * h, static_cast<float>(absl::GetFlag(FLAGS_lm_head_scale)) * inv(h), seed)));
  if (auto s = testutil::WriteFile(out + "/model.safetensors", testutil::SafetensorsBytes(t));
      !s.ok()) {
    std::fprintf(stderr, "make_random_llama: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  if (absl::GetFlag(FLAGS_predictor)) {
    // PyTorch's default init: uniform(+-1/sqrt(fan_in)), i.e. stddev 1/sqrt(3 fan_in).
    const auto pt = [](int64_t fan_in) { return 1.0f / std::sqrt(3.0f * fan_in); };
    std::vector<TensorSpec> p = {
        F32("conv1.weight", {16, 1, 3, 3}, Uniform(144, pt(9), seed)),
        F32("conv1.bias", {16}, Uniform(16, pt(9), seed)),
        F32("conv2.weight", {32, 16, 3, 3}, Uniform(4608, pt(144), seed)),
        F32("conv2.bias", {32}, Uniform(32, pt(144), seed)),
        F32("conv3.weight", {1, 32, 1}, Uniform(32, pt(32), seed)),
        F32("conv3.bias", {1}, Uniform(1, pt(32), seed)),
    };
    if (auto s = testutil::WriteFile(out + "/predictor.safetensors", testutil::SafetensorsBytes(p));
        !s.ok()) {
      std::fprintf(stderr, "make_random_llama: %s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  std::printf("make_random_llama: wrote %s\n", out.c_str());
  return 0;
}

}  // namespace
}  // namespace apr::tools

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return apr::tools::Main();
}
