// The family checkpoints the CUDA decoder's GPU tests compare against the CPU decoder:
// each parses as the family it claims and runs in the CPU decoder (no GPU needed), so a
// GPU test failure cannot be a broken fixture.
#include "backends/cuda/family_checkpoint.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "backends/cpu/cpu_decoder.h"
#include "runtime/testing/safetensors_writer.h"

namespace apr::testutil {
namespace {

const ModelConfig& LoadAndRun(const std::string& dir, std::unique_ptr<cpu::CpuDecoder>* out) {
  auto d = cpu::CpuDecoder::Load(dir);
  EXPECT_TRUE(d.ok()) << d.status();
  *out = std::move(*d);
  auto seq = (*out)->NewSequence();
  std::vector<int32_t> tokens(100);
  for (int i = 0; i < 100; ++i) tokens[i] = (i * 37) % kFamilyVocab;
  std::vector<float> logits;
  EXPECT_TRUE((*out)->Prefill(*seq, tokens, &logits).ok());
  EXPECT_TRUE((*out)->Decode(*seq, 3, &logits).ok());
  for (float v : logits) EXPECT_TRUE(std::isfinite(v));
  return (*out)->config();
}

TEST(FamilyCheckpoint, EachFamilyParsesAndRunsOnTheCpu) {
  struct Want {
    FamilyCheckpoint f;
    ModelFamily family;
    RopeScaling::Type rope;
  };
  std::vector<Want> cases(6);
  cases[0].f.model_type = "qwen2";
  cases[0].family = ModelFamily::kQwen2;
  cases[1].f.model_type = "qwen3";
  cases[1].family = ModelFamily::kQwen3;
  cases[2].f.model_type = "mistral";
  cases[2].f.sliding_window = 48;
  cases[2].family = ModelFamily::kMistral;
  cases[3].f.rope_scaling_json =
      R"({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64})";
  cases[3].rope = RopeScaling::Type::kYarn;
  cases[4].f.rope_scaling_json = R"({"rope_type": "dynamic", "factor": 2.0})";
  cases[4].rope = RopeScaling::Type::kDynamic;
  cases[5].f.rope_scaling_json = LongRopeScalingJson(64);
  cases[5].rope = RopeScaling::Type::kLongRope;
  for (const Want& w : cases) {
    TempDir dir;
    ASSERT_TRUE(WriteFamilyCheckpoint(w.f, dir.path()).ok());
    std::unique_ptr<cpu::CpuDecoder> d;
    const ModelConfig& c = LoadAndRun(dir.path(), &d);
    EXPECT_EQ(c.family, w.family) << w.f.model_type;
    EXPECT_EQ(c.rope_scaling.type, w.rope) << w.f.rope_scaling_json;
    EXPECT_EQ(c.sliding_window, w.f.sliding_window);
    EXPECT_EQ(c.head_dim, kFamilyHeadDim);
    EXPECT_EQ(c.qkv_bias, w.f.model_type == "qwen2");
    EXPECT_EQ(c.qk_norm, w.f.model_type == "qwen3");
  }
}

}  // namespace
}  // namespace apr::testutil
