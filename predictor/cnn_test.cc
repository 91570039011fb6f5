// The C++ CNN against PyTorch (float64) on random weights and inputs; golden file written
// by tools/predictor/make_cnn_golden.py. Also the weight loader's error cases.
#include "predictor/cnn.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include <random>

#include "predictor/history.h"
#include "runtime/safetensors.h"
#include "runtime/testing/safetensors_writer.h"

namespace apr::predictor {
namespace {

constexpr char kGolden[] = "predictor/testdata/cnn_golden.safetensors";

TEST(PredictorCnnTest, MatchesPyTorchGolden) {
  auto cnn = PredictorCnn::Load(kGolden);
  ASSERT_TRUE(cnn.ok()) << cnn.status();
  EXPECT_EQ(cnn->num_parameters(), 16 * 9 + 16 + 32 * 16 * 9 + 32 + 32 + 1);
  auto file = SafetensorsFile::Open(kGolden);
  ASSERT_TRUE(file.ok()) << file.status();
  CnnWorkspace ws;
  int cases = 0;
  for (int i = 0;; ++i) {
    const TensorView* in = (*file)->Find(absl::StrCat("input.", i));
    const TensorView* out = (*file)->Find(absl::StrCat("output.", i));
    if (in == nullptr) break;
    ASSERT_NE(out, nullptr);
    ASSERT_EQ(in->dtype, DType::kF32);
    ASSERT_EQ(out->dtype, DType::kF64);
    const int64_t rows = in->shape[0], cols = in->shape[1];
    std::vector<float> x(rows * cols);
    std::memcpy(x.data(), in->data, in->nbytes);
    std::vector<double> want(cols);
    std::memcpy(want.data(), out->data, out->nbytes);
    // Non-contiguous rows: copy into a wider buffer to exercise `stride`.
    const int64_t stride = cols + 3;
    std::vector<float> wide(rows * stride, -7.0f);
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(&wide[r * stride], &x[r * cols], sizeof(float) * cols);
    std::vector<float> got(cols);
    cnn->Predict(wide.data(), rows, cols, stride, got.data(), ws);
    for (int64_t c = 0; c < cols; ++c) {
      EXPECT_NEAR(got[c], want[c], 1e-5 * (1 + std::abs(want[c])))
          << "case " << i << " (" << rows << "x" << cols << ") column " << c;
    }
    ++cases;
  }
  EXPECT_GE(cases, 5);
}

std::vector<testutil::TensorSpec> ValidTensors() {
  auto f32 = [](std::string name, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return testutil::TensorSpec{name, DType::kF32, shape,
                                testutil::F32Bytes(std::vector<float>(n, 0.5f))};
  };
  return {f32("conv1.weight", {16, 1, 3, 3}), f32("conv1.bias", {16}),
          f32("conv2.weight", {32, 16, 3, 3}), f32("conv2.bias", {32}),
          f32("conv3.weight", {1, 32, 1}),     f32("conv3.bias", {1})};
}

TEST(PredictorCnnTest, LoaderNamesTheBadTensor) {
  testutil::TempDir dir;
  const std::string path = dir.Join("p.safetensors");
  ASSERT_TRUE(testutil::WriteFile(path, testutil::SafetensorsBytes(ValidTensors())).ok());
  EXPECT_TRUE(PredictorCnn::Load(path).ok());

  auto t = ValidTensors();
  t.erase(t.begin() + 3);  // conv2.bias
  ASSERT_TRUE(testutil::WriteFile(path, testutil::SafetensorsBytes(t)).ok());
  auto r = PredictorCnn::Load(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("conv2.bias"), std::string::npos) << r.status();

  t = ValidTensors();
  t[4].shape = {32, 1, 1};
  ASSERT_TRUE(testutil::WriteFile(path, testutil::SafetensorsBytes(t)).ok());
  r = PredictorCnn::Load(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("conv3.weight"), std::string::npos) << r.status();

  t = ValidTensors();
  t[1] = {"conv1.bias", DType::kF16, {16}, testutil::U16Bytes(std::vector<uint16_t>(16, 0))};
  ASSERT_TRUE(testutil::WriteFile(path, testutil::SafetensorsBytes(t)).ok());
  r = PredictorCnn::Load(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("F32"), std::string::npos) << r.status();

  EXPECT_FALSE(PredictorCnn::Load(dir.Join("missing.safetensors")).ok());
}

TEST(PredictorCnnTest, FromWeightsChecksSizes) {
  CnnWeights w;
  EXPECT_FALSE(PredictorCnn::FromWeights(w).ok());
}

}  // namespace
}  // namespace apr::predictor

namespace apr::predictor {
namespace {

// Incremental scoring of a history that shifts by one row equals scoring it from scratch.
TEST(PredictorCnnTest, PredictShiftedEqualsPredict) {
  auto cnn = PredictorCnn::Load(kGolden);
  ASSERT_TRUE(cnn.ok());
  std::mt19937 rng(5);
  std::exponential_distribution<float> e(50.0f);
  for (int64_t rows : {64, 6, 7}) {
    const int64_t cols = 37, width = cols + 5;  // history wider than the candidates
    AttentionHistory h(rows);
    h.Reset(width);
    std::vector<float> row(width);
    for (int i = 0; i < rows; ++i) {
      for (float& v : row) v = e(rng);
      h.Push(row);
    }
    CnnWorkspace inc, full;
    std::vector<float> a(cols), b(cols);
    cnn->Predict(h.data() + 2, rows, cols, width, a.data(), inc);
    for (int step = 0; step < 80; ++step) {
      for (float& v : row) v = e(rng);
      h.Push(row);
      cnn->PredictShifted(h.data() + 2, rows, cols, width, a.data(), inc);
      cnn->Predict(h.data() + 2, rows, cols, width, b.data(), full);
      ASSERT_EQ(a, b) << "rows " << rows << " step " << step;
    }
  }
}

}  // namespace
}  // namespace apr::predictor
