#include "backends/cuda/model_support.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/testing/model_configs.h"

namespace apr::cuda {
namespace {

using ::testing::HasSubstr;

ModelConfig Parse(const char* text) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(text, "config.json");
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : ModelConfig{};
}

TEST(CudaModelSupport, EveryParsedFamilyRuns) {
  EXPECT_TRUE(CheckCudaSupportsModel(Parse(testutil::kLlama31)).ok());
  EXPECT_TRUE(CheckCudaSupportsModel(Parse(testutil::kMistral)).ok());
  EXPECT_TRUE(CheckCudaSupportsModel(Parse(testutil::kTransformers5)).ok());
  EXPECT_TRUE(CheckCudaSupportsModel(Parse(testutil::kQwen25)).ok());
  EXPECT_TRUE(CheckCudaSupportsModel(Parse(testutil::kQwen3)).ok());
  EXPECT_TRUE(CheckCudaSupportsModel(Parse(testutil::kMistralV01)).ok());
}

TEST(CudaModelSupport, EveryRopeTypeRuns) {
  ModelConfig c = Parse(testutil::kLlama2);
  for (RopeScaling::Type t :
       {RopeScaling::Type::kDynamic, RopeScaling::Type::kYarn, RopeScaling::Type::kLongRope}) {
    c.rope_scaling.type = t;
    c.rope_scaling.factor = 2;
    EXPECT_TRUE(CheckCudaSupportsModel(c).ok()) << static_cast<int>(t);
  }
}

TEST(CudaModelSupport, SparseRefusesASlidingWindowNamingIt) {
  EXPECT_TRUE(CheckCudaSupportsSparse(Parse(testutil::kMistral)).ok());
  EXPECT_TRUE(CheckCudaSupportsSparse(Parse(testutil::kQwen25)).ok());  // its window is off
  absl::Status s = CheckCudaSupportsSparse(Parse(testutil::kMistralV01));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("sliding_window (4096)"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("dense attention"));
}

}  // namespace
}  // namespace apr::cuda
