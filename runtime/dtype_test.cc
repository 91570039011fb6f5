#include "runtime/dtype.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace apr {
namespace {

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

TEST(DTypeTest, SizesAndNamesRoundTrip) {
  const struct {
    DType t;
    size_t size;
    const char* name;
  } kCases[] = {{DType::kF32, 4, "F32"},  {DType::kF16, 2, "F16"}, {DType::kBF16, 2, "BF16"},
                {DType::kF64, 8, "F64"},  {DType::kI64, 8, "I64"}, {DType::kI32, 4, "I32"},
                {DType::kI16, 2, "I16"},  {DType::kI8, 1, "I8"},   {DType::kU8, 1, "U8"},
                {DType::kBool, 1, "BOOL"}};
  for (const auto& c : kCases) {
    EXPECT_EQ(DTypeSize(c.t), c.size) << c.name;
    EXPECT_EQ(DTypeName(c.t), c.name);
    EXPECT_EQ(ParseDType(c.name), c.t);
  }
}

TEST(DTypeTest, ParseRejectsUnknownAndLowerCase) {
  EXPECT_EQ(ParseDType("f32"), std::nullopt);
  EXPECT_EQ(ParseDType("F8_E4M3"), std::nullopt);
  EXPECT_EQ(ParseDType(""), std::nullopt);
  EXPECT_EQ(ParseDType("F32 "), std::nullopt);
}

TEST(DTypeTest, F16Normals) {
  EXPECT_EQ(F16ToF32(0x3c00), 1.0f);
  EXPECT_EQ(F16ToF32(0xbc00), -1.0f);
  EXPECT_EQ(F16ToF32(0x4000), 2.0f);
  EXPECT_EQ(F16ToF32(0x3555), 0.333251953125f);        // nearest half to 1/3
  EXPECT_EQ(F16ToF32(0x7bff), 65504.0f);               // largest half
  EXPECT_EQ(F16ToF32(0x0400), std::ldexp(1.0f, -14));  // smallest normal
}

TEST(DTypeTest, F16ZerosAndSubnormals) {
  EXPECT_EQ(Bits(F16ToF32(0x0000)), 0x00000000u);
  EXPECT_EQ(Bits(F16ToF32(0x8000)), 0x80000000u);  // -0 keeps its sign
  EXPECT_EQ(F16ToF32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(F16ToF32(0x8001), -std::ldexp(1.0f, -24));
  EXPECT_EQ(F16ToF32(0x0200), std::ldexp(1.0f, -15));
  EXPECT_EQ(F16ToF32(0x03ff), 1023.0f * std::ldexp(1.0f, -24));  // largest subnormal
}

TEST(DTypeTest, F16InfAndNan) {
  EXPECT_EQ(F16ToF32(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(F16ToF32(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(F16ToF32(0x7e00)));
  EXPECT_TRUE(std::isnan(F16ToF32(0x7c01)));  // signalling NaN must not become inf
  EXPECT_TRUE(std::isnan(F16ToF32(0xfe00)));
}

TEST(DTypeTest, F16AllFiniteValuesMatchArithmetic) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) continue;
    const float mag = exp == 0 ? std::ldexp(static_cast<float>(mant), -24)
                               : std::ldexp(1.0f + mant / 1024.0f, static_cast<int>(exp) - 15);
    const float want = (h & 0x8000) ? -mag : mag;
    ASSERT_EQ(Bits(F16ToF32(static_cast<uint16_t>(h))), Bits(want)) << std::hex << h;
  }
}

TEST(DTypeTest, Bf16) {
  EXPECT_EQ(Bf16ToF32(0x3f80), 1.0f);
  EXPECT_EQ(Bf16ToF32(0xc000), -2.0f);
  EXPECT_EQ(Bf16ToF32(0x7f80), std::numeric_limits<float>::infinity());
  EXPECT_EQ(F32ToBf16(1.0f), 0x3f80);
  // 1 + 2^-8 lies halfway between two bf16 values: ties go to the even one (1.0).
  EXPECT_EQ(F32ToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(F32ToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(DTypeTest, ConvertToF32FloatingTypes) {
  const uint16_t f16[] = {0x3c00, 0x0001, 0x7c00};
  float out[3];
  ASSERT_TRUE(ConvertToF32(DType::kF16, f16, 3, out));
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], std::ldexp(1.0f, -24));
  EXPECT_EQ(out[2], std::numeric_limits<float>::infinity());

  const uint16_t bf16[] = {0x3f80, 0x4040};
  ASSERT_TRUE(ConvertToF32(DType::kBF16, bf16, 2, out));
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], 3.0f);

  const double f64[] = {0.5, -4.25};
  ASSERT_TRUE(ConvertToF32(DType::kF64, f64, 2, out));
  EXPECT_EQ(out[0], 0.5f);
  EXPECT_EQ(out[1], -4.25f);

  const float f32[] = {7.0f};
  ASSERT_TRUE(ConvertToF32(DType::kF32, f32, 1, out));
  EXPECT_EQ(out[0], 7.0f);
}

TEST(DTypeTest, ConvertToF32ReadsUnalignedSource) {
  // Tensor data in a mapped file sits wherever the header ends.
  unsigned char buf[1 + 2 * sizeof(float)];
  const float vals[] = {1.5f, -2.0f};
  std::memcpy(buf + 1, vals, sizeof vals);
  float out[2];
  ASSERT_TRUE(ConvertToF32(DType::kF32, buf + 1, 2, out));
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_EQ(out[1], -2.0f);
  const uint16_t h[] = {0x3c00, 0xc000};
  std::memcpy(buf + 1, h, sizeof h);
  ASSERT_TRUE(ConvertToF32(DType::kF16, buf + 1, 2, out));
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.0f);
}

TEST(DTypeTest, ConvertToF32RejectsIntegerTypes) {
  const int32_t ints[] = {1};
  float out[1] = {42.0f};
  EXPECT_FALSE(ConvertToF32(DType::kI32, ints, 1, out));
  EXPECT_FALSE(ConvertToF32(DType::kBool, ints, 1, out));
  EXPECT_EQ(out[0], 42.0f);
}

}  // namespace
}  // namespace apr
