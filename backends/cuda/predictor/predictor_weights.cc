#include "backends/cuda/predictor/predictor_weights.h"

#include <cmath>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "backends/cuda/predictor/predictor_cnn.h"
#include "runtime/safetensors.h"

namespace apr::cuda {

absl::StatusOr<std::vector<float>> LoadPredictorWeights(const std::string& path) {
  auto f = SafetensorsFile::Open(path);
  if (!f.ok()) return f.status();
  std::vector<float> w(PredictorLayout::kSize);
  const struct {
    const char* name;
    std::vector<int64_t> shape;
    int offset;
  } kTensors[] = {
      {"conv1.weight", {16, 1, 3, 3}, PredictorLayout::kConv1W},
      {"conv1.bias", {16}, PredictorLayout::kConv1B},
      {"conv2.weight", {32, 16, 3, 3}, PredictorLayout::kConv2W},
      {"conv2.bias", {32}, PredictorLayout::kConv2B},
      {"conv3.weight", {1, 32, 1}, PredictorLayout::kConv3W},
      {"conv3.bias", {1}, PredictorLayout::kConv3B},
  };
  for (const auto& t : kTensors) {
    const TensorView* v = (*f)->Find(t.name);
    if (v == nullptr) return absl::NotFoundError(absl::StrCat(path, ": no tensor ", t.name));
    if (v->dtype != DType::kF32 || v->shape != t.shape) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor ", t.name, " must be F32 of the documented shape"));
    }
    std::memcpy(&w[t.offset], v->data, v->nbytes);
  }
  return w;
}

std::vector<float> RandomPredictorWeights(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> w(PredictorLayout::kSize);
  auto fill = [&](int offset, int n, int fan_in) {
    std::uniform_real_distribution<float> u(-1.0f / std::sqrt(float(fan_in)),
                                            1.0f / std::sqrt(float(fan_in)));
    for (int i = 0; i < n; ++i) w[offset + i] = u(rng);
  };
  fill(PredictorLayout::kConv1W, 16 * 9, 9);
  fill(PredictorLayout::kConv1B, 16, 9);
  fill(PredictorLayout::kConv2W, 32 * 16 * 9, 16 * 9);
  fill(PredictorLayout::kConv2B, 32, 16 * 9);
  fill(PredictorLayout::kConv3W, 32, 32);
  fill(PredictorLayout::kConv3B, 1, 32);
  return w;
}

}  // namespace apr::cuda
