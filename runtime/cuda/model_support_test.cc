#include "runtime/cuda/model_support.h"

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

std::string Refusal(const ModelConfig& c) {
  absl::Status s = CheckCudaSupportsModel(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  return std::string(s.message());
}

TEST(CudaModelSupport, LlamaAndGlobalMistralRun) {
  EXPECT_TRUE(CheckCudaSupportsModel(Parse(testutil::kLlama31)).ok());
  EXPECT_TRUE(CheckCudaSupportsModel(Parse(testutil::kMistral)).ok());
  EXPECT_TRUE(CheckCudaSupportsModel(Parse(testutil::kTransformers5)).ok());
  EXPECT_TRUE(CheckCudaSupportsModel(Parse(testutil::kQwen25)).ok());
  EXPECT_TRUE(CheckCudaSupportsModel(Parse(testutil::kQwen3)).ok());
  ModelConfig dynamic = Parse(testutil::kLlama2);
  dynamic.rope_scaling.type = RopeScaling::Type::kDynamic;
  dynamic.rope_scaling.factor = 2;
  EXPECT_TRUE(CheckCudaSupportsModel(dynamic).ok());
  dynamic.rope_scaling.type = RopeScaling::Type::kYarn;
  EXPECT_TRUE(CheckCudaSupportsModel(dynamic).ok());
  dynamic.rope_scaling.type = RopeScaling::Type::kLongRope;
  EXPECT_TRUE(CheckCudaSupportsModel(dynamic).ok());
}

TEST(CudaModelSupport, RefusesWhatTheKernelsLackNamingTheField) {
  EXPECT_THAT(Refusal(Parse(testutil::kMistralV01)), HasSubstr("sliding_window (4096"));
}

}  // namespace
}  // namespace apr::cuda
