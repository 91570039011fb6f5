#include "runtime/model_config.h"

#include <functional>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/testing/model_configs.h"
#include "runtime/testing/safetensors_writer.h"

namespace apr {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

using testutil::kLlama2;
using testutil::kLlama31;
using testutil::kMistral;
using testutil::kMistralV01;
using testutil::kQwen25;
using testutil::kQwen3;
using testutil::kTransformers5;

ModelConfig MustParse(std::string_view text) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(text, "config.json");
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : ModelConfig{};
}

TEST(ModelConfigTest, Llama2) {
  const ModelConfig c = MustParse(kLlama2);
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 11008);
  EXPECT_EQ(c.num_hidden_layers, 32);
  EXPECT_EQ(c.num_attention_heads, 32);
  EXPECT_EQ(c.num_key_value_heads, 32);
  EXPECT_EQ(c.head_dim, 128);  // derived: hidden / heads
  EXPECT_EQ(c.group_size(), 1);
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);  // absent: the Llama default
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_THAT(c.bos_token_ids, ElementsAre(1));
  EXPECT_THAT(c.eos_token_ids, ElementsAre(2));
  EXPECT_EQ(c.torch_dtype, DType::kF16);
}

TEST(ModelConfigTest, Llama31) {
  const ModelConfig c = MustParse(kLlama31);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.num_hidden_layers, 32);
  EXPECT_EQ(c.num_attention_heads, 32);
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.group_size(), 4);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_THAT(c.bos_token_ids, ElementsAre(128000));
  EXPECT_THAT(c.eos_token_ids, ElementsAre(128001, 128008, 128009));
  EXPECT_EQ(c.torch_dtype, DType::kBF16);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.mlp_bias);
}

TEST(ModelConfigTest, Llama31BaseHasScalarEos) {
  json j = json::parse(kLlama31);
  j["eos_token_id"] = 128001;
  EXPECT_THAT(MustParse(j.dump()).eos_token_ids, ElementsAre(128001));
}

TEST(ModelConfigTest, Mistral) {
  const ModelConfig c = MustParse(kMistral);
  EXPECT_EQ(c.vocab_size, 32768);
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.max_position_embeddings, 32768);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kNone);
}

TEST(ModelConfigTest, SlidingWindowCoveringEveryPositionIsGlobal) {
  json j = json::parse(kMistral);
  j["sliding_window"] = 32768;
  const ModelConfig c = MustParse(j.dump());
  EXPECT_EQ(c.max_position_embeddings, 32768);
  EXPECT_EQ(c.sliding_window, 0);
}

TEST(ModelConfigTest, MistralSlidingWindow) {
  const ModelConfig c = MustParse(kMistralV01);
  EXPECT_EQ(c.family, ModelFamily::kMistral);
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.qk_norm);
}

TEST(ModelConfigTest, Qwen25HasQkvBiasAndIgnoresItsDisabledWindow) {
  const ModelConfig c = MustParse(kQwen25);
  EXPECT_EQ(c.family, ModelFamily::kQwen2);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_THAT(c.eos_token_ids, ElementsAre(151645));
}

TEST(ModelConfigTest, Qwen3HasQkNormAndExplicitHeadDim) {
  const ModelConfig c = MustParse(kQwen3);
  EXPECT_EQ(c.family, ModelFamily::kQwen3);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.hidden_size, 1024);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.sliding_window, 0);
}

TEST(ModelConfigTest, FamilyFromArchitecturesWhenModelTypeIsAbsent) {
  json j = json::parse(kQwen3);
  j.erase("model_type");
  EXPECT_EQ(MustParse(j.dump()).family, ModelFamily::kQwen3);
  j = json::parse(kLlama31);
  j.erase("model_type");
  j["architectures"] = {"MistralForCausalLM"};
  EXPECT_EQ(MustParse(j.dump()).family, ModelFamily::kMistral);
}

TEST(ModelConfigTest, Transformers5LayerTypes) {
  json j = json::parse(kQwen3);
  j["layer_types"] = json::array();
  for (int i = 0; i < 28; ++i) j["layer_types"].push_back("full_attention");
  EXPECT_EQ(MustParse(j.dump()).num_hidden_layers, 28);
}

TEST(ModelConfigTest, DynamicYarnAndLongRope) {
  json j = json::parse(kLlama2);
  j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  ModelConfig c = MustParse(j.dump());
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kDynamic);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 2.0);

  // Qwen2.5's long-context recipe: yarn with the original length equal to max positions.
  j = json::parse(kQwen25);
  j["rope_scaling"] = {
      {"type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 32768}};
  c = MustParse(j.dump());
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kYarn);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 32768);
  EXPECT_EQ(c.rope_scaling.attention_factor, 0);
  EXPECT_TRUE(c.rope_scaling.truncate);

  // Absent factor: max / original, as transformers derives it.
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"original_max_position_embeddings", 8192},
                       {"beta_fast", 16}, {"mscale", 0.707}, {"mscale_all_dim", 0.707},
                       {"truncate", false}};
  c = MustParse(j.dump());
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 4.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.beta_fast, 16);
  EXPECT_DOUBLE_EQ(c.rope_scaling.mscale_all_dim, 0.707);
  EXPECT_FALSE(c.rope_scaling.truncate);

  // LongRoPE with Phi-3's top-level original length; head_dim 128 -> 64 factors each.
  j = json::parse(kLlama2);
  j["original_max_position_embeddings"] = 1024;
  j["rope_scaling"] = {{"type", "longrope"},
                       {"short_factor", std::vector<double>(64, 1.5)},
                       {"long_factor", std::vector<double>(64, 3.0)}};
  c = MustParse(j.dump());
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLongRope);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 1024);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 4.0);
  EXPECT_EQ(c.rope_scaling.short_factor.size(), 64u);
  EXPECT_DOUBLE_EQ(c.rope_scaling.long_factor[63], 3.0);
}

TEST(ModelConfigTest, Transformers5RopeParameters) {
  const ModelConfig c = MustParse(kTransformers5);
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.num_hidden_layers, 16);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 32.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.torch_dtype, DType::kBF16);
  EXPECT_THAT(c.eos_token_ids, ElementsAre(128001));
}

TEST(ModelConfigTest, Transformers5DefaultRope) {
  json j = json::parse(kTransformers5);
  j["rope_parameters"] = {{"rope_theta", 500000.0}, {"rope_type", "default"}};
  const ModelConfig c = MustParse(j.dump());
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kNone);
}

TEST(ModelConfigTest, BothRopeSpellingsAgreeing) {
  json j = json::parse(kLlama31);
  j["rope_parameters"] = j["rope_scaling"];
  j["rope_parameters"]["rope_theta"] = 500000.0;
  const ModelConfig c = MustParse(j.dump());
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLlama3);
}

TEST(ModelConfigTest, OldRopeTypeSpellingAndLinearScaling) {
  json j = json::parse(kLlama2);
  j["rope_scaling"] = {{"factor", 8.0}, {"type", "linear"}};  // LongChat-7B-32K
  const ModelConfig c = MustParse(j.dump());
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
}

TEST(ModelConfigTest, IntegerValuedFloatsAndDefaults) {
  // The smallest config: only the required sizes.
  const ModelConfig c = MustParse(R"({"vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
      "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 64,
      "rope_theta": 10000})");
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.torch_dtype, DType::kBF16);
  EXPECT_TRUE(c.bos_token_ids.empty());
  EXPECT_FALSE(c.tie_word_embeddings);
}

TEST(ModelConfigTest, HeadDimMayDifferFromHiddenOverHeads) {
  json j = json::parse(kMistral);  // Mistral-NeMo: hidden 5120, 32 heads of 128
  j["hidden_size"] = 5120;
  j["head_dim"] = 128;
  EXPECT_EQ(MustParse(j.dump()).head_dim, 128);
}

TEST(ModelConfigTest, LoadModelConfigReadsFile) {
  testutil::TempDir dir;
  const std::string path = dir.Join("config.json");
  ASSERT_TRUE(testutil::WriteFile(path, kLlama31).ok());
  absl::StatusOr<ModelConfig> c = LoadModelConfig(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->vocab_size, 128256);

  absl::StatusOr<ModelConfig> missing = LoadModelConfig(dir.Join("nope.json"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("nope.json"));

  ASSERT_TRUE(testutil::WriteFile(path, R"({"vocab_size": -1})").ok());
  absl::StatusOr<ModelConfig> bad = LoadModelConfig(path);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr(path));
}

struct BadConfig {
  const char* label;
  const char* base;
  std::function<void(json&)> edit;
  const char* expect;  // in the message, besides the file name
};

std::vector<BadConfig> BadConfigs() {
  return {
      {"missing vocab", kLlama31, [](json& j) { j.erase("vocab_size"); },
       "field 'vocab_size' is required"},
      {"null size", kLlama31, [](json& j) { j["hidden_size"] = nullptr; },
       "field 'hidden_size' is required"},
      {"zero size", kLlama31, [](json& j) { j["intermediate_size"] = 0; },
       "field 'intermediate_size' must be an integer"},
      {"negative size", kLlama31, [](json& j) { j["num_hidden_layers"] = -32; },
       "field 'num_hidden_layers' must be an integer in [1, 2147483647], got -32"},
      {"string size", kLlama31, [](json& j) { j["hidden_size"] = "4096"; },
       "field 'hidden_size' must be an integer in [1, 2147483647], got \"4096\""},
      {"fractional size", kLlama31, [](json& j) { j["hidden_size"] = 4096.5; },
       "field 'hidden_size'"},
      {"absurd size", kLlama31, [](json& j) { j["vocab_size"] = uint64_t{1} << 40; },
       "field 'vocab_size'"},
      {"heads do not divide hidden", kLlama2,
       [](json& j) {
         j["num_attention_heads"] = 30;
         j["num_key_value_heads"] = 30;
       },
       "field 'num_attention_heads' (30) must divide hidden_size (4096) when head_dim is absent"},
      {"kv heads do not divide heads", kLlama31, [](json& j) { j["num_key_value_heads"] = 5; },
       "field 'num_key_value_heads' (5) must divide num_attention_heads (32)"},
      {"zero kv heads", kLlama31, [](json& j) { j["num_key_value_heads"] = 0; },
       "field 'num_key_value_heads'"},
      {"zero head_dim", kTransformers5, [](json& j) { j["head_dim"] = 0; }, "field 'head_dim'"},
      {"zero eps", kLlama31, [](json& j) { j["rms_norm_eps"] = 0.0; },
       "field 'rms_norm_eps' must be a finite number > 0"},
      {"negative eps", kLlama31, [](json& j) { j["rms_norm_eps"] = -1e-5; },
       "field 'rms_norm_eps'"},
      {"string eps", kLlama31, [](json& j) { j["rms_norm_eps"] = "1e-5"; }, "field 'rms_norm_eps'"},
      {"zero theta", kLlama31, [](json& j) { j["rope_theta"] = 0; }, "field 'rope_theta'"},
      {"gelu", kLlama31, [](json& j) { j["hidden_act"] = "gelu"; },
       "field 'hidden_act' \"gelu\" is not supported"},
      {"gemma model type", kLlama31, [](json& j) { j["model_type"] = "gemma"; },
       "field 'model_type' \"gemma\" is not supported (llama, mistral, qwen2, qwen3)"},
      {"phi3 architecture", kLlama31, [](json& j) { j["architectures"] = {"Phi3ForCausalLM"}; },
       "field 'architectures' must list LlamaForCausalLM for model_type \"llama\""},
      {"qwen architecture, llama type", kLlama31,
       [](json& j) { j["architectures"] = {"Qwen2ForCausalLM"}; },
       "field 'architectures' must list LlamaForCausalLM"},
      {"unknown architecture, no type", kLlama31,
       [](json& j) {
         j.erase("model_type");
         j["architectures"] = {"GPT2LMHeadModel"};
       },
       "must list LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM or Qwen3ForCausalLM"},
      {"architectures not a list", kLlama31,
       [](json& j) { j["architectures"] = "LlamaForCausalLM"; }, "field 'architectures'"},
      {"quantized", kLlama31,
       [](json& j) {
         j["quantization_config"] = {{"quant_method", "gptq"}};
       },
       "quantization_config"},
      {"ntk", kLlama31, [](json& j) { j["rope_scaling"]["rope_type"] = "ntk"; },
       "field 'rope_scaling.rope_type' \"ntk\" is not supported"},
      {"dynamic without factor", kLlama2,
       [](json& j) {
         j["rope_scaling"] = {{"type", "dynamic"}};
       },
       "field 'rope_scaling.factor' is required"},
      {"yarn bad beta", kQwen25,
       [](json& j) {
         j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}, {"beta_fast", -1}};
       },
       "field 'rope_scaling.beta_fast' must be a finite number > 0"},
      {"longrope without original length", kLlama2,
       [](json& j) {
         j["rope_scaling"] = {{"type", "longrope"},
                              {"short_factor", std::vector<double>(64, 1.0)},
                              {"long_factor", std::vector<double>(64, 1.0)}};
       },
       "field 'rope_scaling.original_max_position_embeddings' is required"},
      {"longrope short list", kLlama2,
       [](json& j) {
         j["rope_scaling"] = {{"type", "longrope"},
                              {"original_max_position_embeddings", 1024},
                              {"short_factor", std::vector<double>(63, 1.0)},
                              {"long_factor", std::vector<double>(64, 1.0)}};
       },
       "field 'rope_scaling.short_factor' must list head_dim / 2 = 64 numbers > 0"},
      {"partial rotary", kLlama31, [](json& j) { j["partial_rotary_factor"] = 0.5; },
       "field 'partial_rotary_factor' other than 1 is not supported"},
      {"rope type missing", kLlama31, [](json& j) { j["rope_scaling"].erase("rope_type"); },
       "field 'rope_scaling.rope_type' is required"},
      {"rope type spellings disagree", kLlama31,
       [](json& j) { j["rope_scaling"]["type"] = "linear"; },
       "field 'rope_scaling.type' \"linear\" disagrees with rope_scaling.rope_type \"llama3\""},
      {"llama3 missing low_freq_factor", kLlama31,
       [](json& j) { j["rope_scaling"].erase("low_freq_factor"); },
       "field 'rope_scaling.low_freq_factor' is required"},
      {"llama3 high <= low", kLlama31, [](json& j) { j["rope_scaling"]["high_freq_factor"] = 1.0; },
       "field 'rope_scaling.high_freq_factor' (1) must exceed low_freq_factor (1)"},
      {"linear without factor", kLlama2,
       [](json& j) {
         j["rope_scaling"] = {{"type", "linear"}};
       },
       "field 'rope_scaling.factor' is required"},
      {"rope_scaling not an object", kLlama31, [](json& j) { j["rope_scaling"] = 8.0; },
       "field 'rope_scaling' must be an object or null"},
      {"rope_parameters ntk", kTransformers5,
       [](json& j) { j["rope_parameters"]["rope_type"] = "ntk"; },
       "field 'rope_parameters.rope_type' \"ntk\""},
      {"rope_parameters bad theta", kTransformers5,
       [](json& j) { j["rope_parameters"]["rope_theta"] = -1.0; },
       "field 'rope_parameters.rope_theta'"},
      {"per-layer-type rope_parameters", kTransformers5,
       [](json& j) {
         j["rope_parameters"] = {{"full_attention", {{"rope_type", "default"}}}};
       },
       "field 'rope_parameters.rope_type' is required"},
      {"rope_theta disagrees", kTransformers5, [](json& j) { j["rope_theta"] = 10000.0; },
       "field 'rope_theta' 10000 disagrees with rope_parameters.rope_theta 500000"},
      {"rope_scaling disagrees", kTransformers5,
       [](json& j) {
         j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
       },
       "field 'rope_scaling' disagrees with rope_parameters"},
      {"llama sliding window", kLlama31, [](json& j) { j["sliding_window"] = 4096; },
       "field 'sliding_window' (4096) below max_position_embeddings (131072) is supported for "
       "model_type mistral only"},
      {"qwen sliding window on", kQwen25, [](json& j) { j["use_sliding_window"] = true; },
       "field 'use_sliding_window' true is not supported"},
      {"mixed layer types", kQwen3,
       [](json& j) {
         j["layer_types"] = json::array();
         for (int i = 0; i < 28; ++i) {
           j["layer_types"].push_back(i < 20 ? "full_attention" : "sliding_attention");
         }
       },
       "field 'layer_types' must list \"full_attention\" for each of the 28 layers"},
      {"qwen3 attention bias", kQwen3, [](json& j) { j["attention_bias"] = true; },
       "field 'attention_bias' true is not supported"},
      {"attention bias", kLlama31, [](json& j) { j["attention_bias"] = true; },
       "field 'attention_bias' true is not supported"},
      {"mlp bias", kLlama31, [](json& j) { j["mlp_bias"] = true; },
       "field 'mlp_bias' true is not supported"},
      {"tie not bool", kLlama31, [](json& j) { j["tie_word_embeddings"] = "yes"; },
       "field 'tie_word_embeddings' must be true or false"},
      {"eos past vocab", kLlama31,
       [](json& j) {
         j["eos_token_id"] = {128001, 128256};
       },
       "field 'eos_token_id' must be a token id or a list of them, each in [0, vocab_size = "
       "128256)"},
      {"negative bos", kLlama31, [](json& j) { j["bos_token_id"] = -1; }, "field 'bos_token_id'"},
      {"string eos", kLlama31, [](json& j) { j["eos_token_id"] = {"</s>"}; },
       "field 'eos_token_id'"},
      {"int8 dtype", kLlama31, [](json& j) { j["torch_dtype"] = "int8"; },
       "field 'torch_dtype' \"int8\" is not supported"},
      {"dtype spellings disagree", kLlama31, [](json& j) { j["dtype"] = "float32"; },
       "field 'dtype' \"float32\" disagrees with torch_dtype \"bfloat16\""},
  };
}

TEST(ModelConfigTest, RejectsInvalidConfigs) {
  for (const BadConfig& c : BadConfigs()) {
    json j = json::parse(c.base);
    c.edit(j);
    absl::StatusOr<ModelConfig> got = ParseModelConfig(j.dump(), "/models/x/config.json");
    ASSERT_FALSE(got.ok()) << c.label;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << c.label;
    EXPECT_THAT(std::string(got.status().message()), HasSubstr("/models/x/config.json: "))
        << c.label;
    EXPECT_THAT(std::string(got.status().message()), HasSubstr(c.expect)) << c.label;
  }
}

TEST(ModelConfigTest, RejectsNonJsonAndNonObjects) {
  for (const char* text : {"", "{", "{\"vocab_size\": 1,}", "[1, 2]", "\"config\"", "null"}) {
    absl::StatusOr<ModelConfig> got = ParseModelConfig(text, "cfg.json");
    ASSERT_FALSE(got.ok()) << text;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(std::string(got.status().message()), HasSubstr("cfg.json: ")) << text;
  }
}

}  // namespace
}  // namespace apr
