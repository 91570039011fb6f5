#include "runtime/llama_weights.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/testing/safetensors_writer.h"
#include "runtime/testing/tiny_llama.h"

namespace apr {
namespace {

using ::testing::HasSubstr;
using testutil::TempDir;
using testutil::TinyLlama;
using testutil::TinyLlamaValue;

std::string Message(const absl::Status& s) { return std::string(s.message()); }

std::vector<float> Expected(const std::string& name, size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = TinyLlamaValue(name, i);
  return v;
}

absl::StatusOr<LlamaWeights> Load(const TinyLlama& m, const TempDir& dir) {
  absl::Status s = testutil::WriteTinyLlama(m, dir.path());
  if (!s.ok()) return s;
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir.path());
  if (!ckpt.ok()) return ckpt.status();
  return LoadLlamaWeightsF32(**ckpt);
}

void ExpectAllWeights(const TinyLlama& m, const LlamaWeights& w) {
  const size_t h = m.hidden, q = m.heads * m.head_dim, kv = m.kv_heads * m.head_dim,
               in = m.intermediate, v = m.vocab;
  EXPECT_EQ(w.config.hidden_size, m.hidden);
  EXPECT_EQ(w.embed_tokens, Expected("model.embed_tokens.weight", v * h));
  ASSERT_EQ(w.layers.size(), static_cast<size_t>(m.layers));
  for (int64_t i = 0; i < m.layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    const LlamaLayerWeights& l = w.layers[i];
    EXPECT_EQ(l.input_norm, Expected(p + "input_layernorm.weight", h)) << i;
    EXPECT_EQ(l.q_proj, Expected(p + "self_attn.q_proj.weight", q * h)) << i;
    EXPECT_EQ(l.k_proj, Expected(p + "self_attn.k_proj.weight", kv * h)) << i;
    EXPECT_EQ(l.v_proj, Expected(p + "self_attn.v_proj.weight", kv * h)) << i;
    EXPECT_EQ(l.o_proj, Expected(p + "self_attn.o_proj.weight", h * q)) << i;
    EXPECT_EQ(l.post_attn_norm, Expected(p + "post_attention_layernorm.weight", h)) << i;
    EXPECT_EQ(l.gate_proj, Expected(p + "mlp.gate_proj.weight", in * h)) << i;
    EXPECT_EQ(l.up_proj, Expected(p + "mlp.up_proj.weight", in * h)) << i;
    EXPECT_EQ(l.down_proj, Expected(p + "mlp.down_proj.weight", h * in)) << i;
    const bool bias = m.model_type == "qwen2", norm = m.model_type == "qwen3";
    EXPECT_EQ(l.q_bias, bias ? Expected(p + "self_attn.q_proj.bias", q) : std::vector<float>{});
    EXPECT_EQ(l.k_bias, bias ? Expected(p + "self_attn.k_proj.bias", kv) : std::vector<float>{});
    EXPECT_EQ(l.v_bias, bias ? Expected(p + "self_attn.v_proj.bias", kv) : std::vector<float>{});
    const size_t hd = m.head_dim;
    EXPECT_EQ(l.q_norm, norm ? Expected(p + "self_attn.q_norm.weight", hd) : std::vector<float>{});
    EXPECT_EQ(l.k_norm, norm ? Expected(p + "self_attn.k_norm.weight", hd) : std::vector<float>{});
  }
  EXPECT_EQ(w.final_norm, Expected("model.norm.weight", h));
}

TEST(LlamaWeightsTest, LoadsEveryTensorInEveryDtypeAndLayout) {
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int shards : {1, 3}) {
      SCOPED_TRACE(absl::StrCat(std::string(DTypeName(dtype)), " shards=", shards));
      TinyLlama m;
      m.dtype = dtype;
      m.shards = shards;
      TempDir dir;
      absl::StatusOr<LlamaWeights> w = Load(m, dir);
      ASSERT_TRUE(w.ok()) << w.status();
      ExpectAllWeights(m, *w);
      EXPECT_EQ(w->lm_head, Expected("lm_head.weight", m.vocab * m.hidden));
      EXPECT_NE(w->lm_head, w->embed_tokens);
    }
  }
}

TEST(LlamaWeightsTest, Qwen2BiasesAndQwen3QkNorms) {
  for (const char* type : {"qwen2", "qwen3"}) {
    SCOPED_TRACE(type);
    TinyLlama m;
    m.model_type = type;
    m.shards = 2;
    TempDir dir;
    absl::StatusOr<LlamaWeights> w = Load(m, dir);
    ASSERT_TRUE(w.ok()) << w.status();
    ExpectAllWeights(m, *w);
  }
}

TEST(LlamaWeightsTest, Qwen2WithoutBiasesIsRefusedNamingTheTensor) {
  TinyLlama m;  // a Llama checkpoint whose config claims qwen2
  TempDir dir;
  ASSERT_TRUE(testutil::WriteTinyLlama(m, dir.path()).ok());
  TinyLlama qwen = m;
  qwen.model_type = "qwen2";
  ASSERT_TRUE(testutil::WriteFile(dir.Join("config.json"), testutil::TinyLlamaConfig(qwen)).ok());
  auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  absl::StatusOr<LlamaWeights> w = LoadLlamaWeightsF32(**ckpt);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(w.status()), HasSubstr("model.layers.0.self_attn.q_proj.bias"));
}

TEST(LlamaWeightsTest, TiedWithoutLmHeadCopiesEmbedding) {
  TinyLlama m;
  m.tie_word_embeddings = true;
  m.write_lm_head = false;
  TempDir dir;
  absl::StatusOr<LlamaWeights> w = Load(m, dir);
  ASSERT_TRUE(w.ok()) << w.status();
  ExpectAllWeights(m, *w);
  EXPECT_EQ(w->lm_head, w->embed_tokens);
  EXPECT_EQ(w->lm_head.size(), static_cast<size_t>(m.vocab * m.hidden));
}

TEST(LlamaWeightsTest, TiedIgnoresAStoredLmHead) {
  TinyLlama m;
  m.tie_word_embeddings = true;
  m.write_lm_head = true;  // holds other values than the embedding
  TempDir dir;
  absl::StatusOr<LlamaWeights> w = Load(m, dir);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->lm_head, w->embed_tokens);
}

TEST(LlamaWeightsTest, UntiedNeedsLmHead) {
  TinyLlama m;
  m.write_lm_head = false;
  TempDir dir;
  absl::StatusOr<LlamaWeights> w = Load(m, dir);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(w.status()), HasSubstr("lm_head.weight"));
}

TEST(LlamaWeightsTest, ConfigThatDisagreesWithTheWeights) {
  TinyLlama m;
  m.shards = 2;
  TempDir dir;
  ASSERT_TRUE(testutil::WriteTinyLlama(m, dir.path()).ok());
  // Claims a wider MLP than the tensors have.
  TinyLlama wide = m;
  wide.intermediate = 24;
  ASSERT_TRUE(testutil::WriteFile(dir.Join("config.json"), testutil::TinyLlamaConfig(wide)).ok());
  auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  absl::StatusOr<LlamaWeights> w = LoadLlamaWeightsF32(**ckpt);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(w.status()), absl::StrCat("model.layers.0.mlp.gate_proj.weight in ",
                                              dir.Join("model-00001-of-00002.safetensors"),
                                              " has shape [12, 8], expected [24, 8]"));
}

TEST(LlamaWeightsTest, MoreLayersThanTheWeightsHave) {
  TinyLlama m;
  TempDir dir;
  ASSERT_TRUE(testutil::WriteTinyLlama(m, dir.path()).ok());
  TinyLlama deeper = m;
  deeper.layers = 3;
  ASSERT_TRUE(testutil::WriteFile(dir.Join("config.json"), testutil::TinyLlamaConfig(deeper)).ok());
  auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  absl::StatusOr<LlamaWeights> w = LoadLlamaWeightsF32(**ckpt);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(w.status()), HasSubstr("model.layers.2.input_layernorm.weight"));
}

TEST(LlamaWeightsTest, IntegerTensorIsRejected) {
  TinyLlama m;
  TempDir dir;
  ASSERT_TRUE(testutil::WriteTinyLlama(m, dir.path()).ok());
  std::vector<testutil::TensorSpec> tensors = testutil::TinyLlamaTensors(m);
  for (auto& t : tensors) {
    if (t.name == "model.norm.weight") t.dtype = DType::kI32;  // same byte size as F32
  }
  ASSERT_TRUE(
      testutil::WriteFile(dir.Join("model.safetensors"), testutil::SafetensorsBytes(tensors)).ok());
  auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  absl::StatusOr<LlamaWeights> w = LoadLlamaWeightsF32(**ckpt);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(w.status()), HasSubstr("model.norm.weight in"));
  EXPECT_THAT(Message(w.status()), HasSubstr("has dtype I32"));
}

}  // namespace
}  // namespace apr
