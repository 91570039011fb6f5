#include "runtime/rope.h"

#include <gtest/gtest.h>

#include <cmath>

namespace apr {
namespace {

ModelConfig Config(int64_t head_dim, double theta) {
  ModelConfig c;
  c.head_dim = head_dim;
  c.rope_theta = theta;
  return c;
}

TEST(Rope, DefaultFrequenciesArePowersOfTheta) {
  const auto inv = RopeInverseFrequencies(Config(8, 10000));
  ASSERT_EQ(inv.size(), 4u);
  EXPECT_FLOAT_EQ(inv[0], 1.0f);
  EXPECT_FLOAT_EQ(inv[1], 0.1f);
  EXPECT_FLOAT_EQ(inv[2], 0.01f);
  EXPECT_FLOAT_EQ(inv[3], 0.001f);
}

TEST(Rope, LinearScalingDividesEveryFrequency) {
  ModelConfig c = Config(4, 100);
  c.rope_scaling.type = RopeScaling::Type::kLinear;
  c.rope_scaling.factor = 4;
  const auto inv = RopeInverseFrequencies(c);
  EXPECT_FLOAT_EQ(inv[0], 0.25f);
  EXPECT_FLOAT_EQ(inv[1], 0.025f);
}

TEST(Rope, Llama3ScalingKeepsHighDividesLowAndBlendsMedium) {
  // theta 100, head_dim 6: frequencies 1, 100^(-1/3), 100^(-2/3), wavelengths 6.3, 29.2
  // and 135.4 against the bands [64/4, 64/1] = [16, 64]. Expected values worked out by hand
  // from the Llama-3.1 formula: high kept, low / 8, medium smoothed.
  ModelConfig c = Config(6, 100);
  c.rope_scaling = {RopeScaling::Type::kLlama3, 8.0, 1.0, 4.0, 64};
  const auto inv = RopeInverseFrequencies(c);
  ASSERT_EQ(inv.size(), 3u);
  EXPECT_FLOAT_EQ(inv[0], 1.0f);
  EXPECT_NEAR(inv[1], 0.10198936, 1e-6);
  EXPECT_NEAR(inv[2], 0.046415888 / 8, 1e-7);
}

TEST(Rope, RotatesHalvesByPositionTimesFrequency) {
  const std::vector<float> inv = {1.0f, 0.5f};
  const RopeTable t = MakeRopeTable(inv, 3, 6);
  // One vector of head_dim 4: pairs (x0, x2) and (x1, x3).
  float x[4] = {1, 2, 0, 0};
  ApplyRope(t, 5, 1, 4, x);
  EXPECT_NEAR(x[0], std::cos(5.0), 1e-6);
  EXPECT_NEAR(x[2], std::sin(5.0), 1e-6);
  EXPECT_NEAR(x[1], 2 * std::cos(2.5), 1e-6);
  EXPECT_NEAR(x[3], 2 * std::sin(2.5), 1e-6);
}

TEST(Rope, PositionZeroIsIdentityAndNormIsKept) {
  const std::vector<float> inv = {1.0f, 0.1f, 0.01f};
  const RopeTable t = MakeRopeTable(inv, 0, 100);
  float a[6] = {1, -2, 3, 0.5f, 4, -1};
  float b[6];
  std::copy(a, a + 6, b);
  ApplyRope(t, 0, 1, 6, b);
  for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(a[i], b[i]);
  ApplyRope(t, 97, 1, 6, b);
  double na = 0, nb = 0;
  for (int i = 0; i < 6; ++i) na += a[i] * a[i], nb += b[i] * b[i];
  EXPECT_NEAR(na, nb, 1e-4);
}

// Expected values below come from tools/goldens/rope_reference.py, an independent numpy
// float32 transcription of transformers' _compute_*_parameters.
void ExpectFrequencies(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 2e-7 * want[i]) << i;
}

TEST(Rope, YarnBlendsInterpolationAndExtrapolationOverTheCorrectionRange) {
  // head_dim 16, factor 4, original 256: correction range [0, 4] of the 8 frequencies.
  ModelConfig c = Config(16, 10000);
  c.max_position_embeddings = 1024;
  c.rope_scaling.type = RopeScaling::Type::kYarn;
  c.rope_scaling.factor = 4;
  c.rope_scaling.original_max_position_embeddings = 256;
  const RopeParams p = RopeForContext(c, 10);
  ExpectFrequencies(p.inv_freq, {1.0f, 2.5693506e-01f, 6.25e-02f, 1.3834965e-02f, 2.4999999e-03f,
                                 7.9056947e-04f, 2.5000001e-04f, 7.9056947e-05f});
  EXPECT_NEAR(p.attention_factor, 1.138629436, 1e-6);  // 0.1 ln 4 + 1
  // Yarn does not depend on the context length.
  EXPECT_EQ(RopeForContext(c, 1000).inv_freq, p.inv_freq);
}

TEST(Rope, YarnUntruncatedRangeBetasAndMscaleRatio) {
  ModelConfig c = Config(16, 10000);
  c.rope_scaling.type = RopeScaling::Type::kYarn;
  c.rope_scaling.factor = 4;
  c.rope_scaling.original_max_position_embeddings = 256;
  c.rope_scaling.beta_fast = 16;
  c.rope_scaling.beta_slow = 2;
  c.rope_scaling.truncate = false;
  c.rope_scaling.mscale = 0.707;
  c.rope_scaling.mscale_all_dim = 1.0;
  RopeParams p = RopeForContext(c, 1);
  ExpectFrequencies(p.inv_freq, {1.0f, 2.9152563e-01f, 5.0664395e-02f, 7.9056947e-03f,
                                 2.4999999e-03f, 7.9056947e-04f, 2.5000001e-04f, 7.9056947e-05f});
  EXPECT_NEAR(p.attention_factor, 0.964326915, 1e-6);
  c.rope_scaling.attention_factor = 1.25;  // an explicit factor wins over the formula
  EXPECT_FLOAT_EQ(RopeForContext(c, 1).attention_factor, 1.25f);
}

TEST(Rope, LongRopeSwitchesFactorsPastTheOriginalLength) {
  ModelConfig c = Config(8, 10000);
  c.rope_scaling.type = RopeScaling::Type::kLongRope;
  c.rope_scaling.factor = 8;
  c.rope_scaling.original_max_position_embeddings = 64;
  c.rope_scaling.short_factor = {1, 1.5, 2, 4};
  c.rope_scaling.long_factor = {2, 4, 8, 16};
  const RopeParams short_ctx = RopeForContext(c, 64);
  ExpectFrequencies(short_ctx.inv_freq, {1.0f, 6.666667e-02f, 5.0e-03f, 2.5e-04f});
  const RopeParams long_ctx = RopeForContext(c, 65);
  ExpectFrequencies(long_ctx.inv_freq, {0.5f, 2.5e-02f, 1.25e-03f, 6.25e-05f});
  // sqrt(1 + ln 8 / ln 64) for both.
  EXPECT_NEAR(short_ctx.attention_factor, 1.224744871, 1e-6);
  EXPECT_NEAR(long_ctx.attention_factor, 1.224744871, 1e-6);
}

TEST(Rope, DynamicNtkIsDefaultUpToMaxPositionsThenRaisesTheBase) {
  ModelConfig c = Config(8, 10000);
  c.max_position_embeddings = 100;
  c.rope_scaling.type = RopeScaling::Type::kDynamic;
  c.rope_scaling.factor = 2;
  EXPECT_EQ(RopeForContext(c, 100).inv_freq, RopeInverseFrequencies(Config(8, 10000)));
  // base 10000 * 3^(4/3) at 200 positions.
  ExpectFrequencies(RopeForContext(c, 200).inv_freq,
                    {1.0f, 6.9336124e-02f, 4.8074988e-03f, 3.3333333e-04f});
  EXPECT_EQ(RopeForContext(c, 200).attention_factor, 1.0f);
}

TEST(Rope, TableScaleMultipliesCosAndSin) {
  const RopeTable t = MakeRopeTable({1.0f}, 0, 3, 1.5f);
  EXPECT_FLOAT_EQ(t.cos[2], static_cast<float>(std::cos(2.0)) * 1.5f);
  EXPECT_FLOAT_EQ(t.sin[2], static_cast<float>(std::sin(2.0)) * 1.5f);
}

}  // namespace
}  // namespace apr
