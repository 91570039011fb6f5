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

}  // namespace
}  // namespace apr
