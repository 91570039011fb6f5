#include "predictor/cnn.h"

#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/safetensors.h"

namespace apr::predictor {
namespace {

constexpr int64_t kC1 = CnnWeights::kC1, kC2 = CnnWeights::kC2;
// Output rows of conv2 computed per chunk: keeps the chunk's [32][rows * width] block in
// cache while the nine taps accumulate into it.
constexpr int64_t kRowChunk = 8;

struct TensorSpec {
  const char* name;
  std::vector<int64_t> shape;
  std::vector<float> CnnWeights::*field;
};

const std::vector<TensorSpec>& Specs() {
  static const auto* specs = new std::vector<TensorSpec>{
      {"conv1.weight", {kC1, 1, 3, 3}, &CnnWeights::conv1_weight},
      {"conv1.bias", {kC1}, &CnnWeights::conv1_bias},
      {"conv2.weight", {kC2, kC1, 3, 3}, &CnnWeights::conv2_weight},
      {"conv2.bias", {kC2}, &CnnWeights::conv2_bias},
      {"conv3.weight", {1, kC2, 1}, &CnnWeights::conv3_weight},
      {"conv3.bias", {1}, &CnnWeights::conv3_bias},
  };
  return *specs;
}

int64_t Numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace

PredictorCnn::PredictorCnn(CnnWeights w) : w_(std::move(w)), taps_(9 * kC2 * kC1) {
  for (int64_t o = 0; o < kC2; ++o)
    for (int64_t i = 0; i < kC1; ++i)
      for (int64_t t = 0; t < 9; ++t) taps_[(t * kC2 + o) * kC1 + i] = w_.conv2_weight[(o * kC1 + i) * 9 + t];
}

absl::StatusOr<PredictorCnn> PredictorCnn::FromWeights(CnnWeights w) {
  for (const TensorSpec& s : Specs()) {
    const size_t want = Numel(s.shape), got = (w.*s.field).size();
    if (got != want) {
      return absl::InvalidArgumentError(
          absl::StrCat("predictor weight ", s.name, " has ", got, " values, expected ", want));
    }
  }
  return PredictorCnn(std::move(w));
}

absl::StatusOr<PredictorCnn> PredictorCnn::Load(const std::string& path) {
  auto file = SafetensorsFile::Open(path);
  if (!file.ok()) return file.status();
  CnnWeights w;
  for (const TensorSpec& s : Specs()) {
    const TensorView* t = (*file)->Find(s.name);
    if (t == nullptr)
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor ", s.name, " is missing"));
    if (t->dtype != DType::kF32) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor ", s.name, " is ",
                                                     std::string(DTypeName(t->dtype)),
                                                     ", expected F32"));
    }
    if (t->shape != s.shape) {
      std::string got, want;
      for (int64_t d : t->shape) absl::StrAppend(&got, got.empty() ? "" : ",", d);
      for (int64_t d : s.shape) absl::StrAppend(&want, want.empty() ? "" : ",", d);
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor ", s.name, " has shape [",
                                                     got, "], expected [", want, "]"));
    }
    std::vector<float>& dst = w.*s.field;
    dst.resize(t->numel());
    std::memcpy(dst.data(), t->data, t->nbytes);
  }
  return FromWeights(std::move(w));
}

int64_t PredictorCnn::num_parameters() const {
  int64_t n = 0;
  for (const TensorSpec& s : Specs()) n += (w_.*s.field).size();
  return n;
}

void PredictorCnn::Predict(const float* x, int64_t rows, int64_t cols, int64_t stride,
                           float* scores, CnnWorkspace& ws) const {
  // Zero-padded layouts: width wp = cols + 2, height rows + 2; pixel (r, c) of a map
  // lives at (r + 1) * wp + (c + 1).
  const int64_t wp = cols + 2, hp = rows + 2, plane = hp * wp;
  ws.input.assign(plane, 0.0f);
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(&ws.input[(r + 1) * wp + 1], x + r * stride, sizeof(float) * cols);

  // conv1 + ReLU into a padded [16][hp][wp] map (+2 floats of slack read by the last tap
  // of conv2 for the two junk columns of the last row).
  ws.conv1.assign(kC1 * plane + 2, 0.0f);
  for (int64_t o = 0; o < kC1; ++o) {
    const float* k = &w_.conv1_weight[o * 9];
    const float bias = w_.conv1_bias[o];
    float* out = &ws.conv1[o * plane];
    for (int64_t r = 0; r < rows; ++r) {
      const float* in0 = &ws.input[r * wp];  // row r - 1 of the image, padded
      const float* in1 = in0 + wp;
      const float* in2 = in1 + wp;
      float* dst = out + (r + 1) * wp + 1;
      for (int64_t c = 0; c < cols; ++c) {
        float s = bias;
        s += k[0] * in0[c] + k[1] * in0[c + 1] + k[2] * in0[c + 2];
        s += k[3] * in1[c] + k[4] * in1[c + 1] + k[5] * in1[c + 2];
        s += k[6] * in2[c] + k[7] * in2[c + 1] + k[8] * in2[c + 2];
        dst[c] = s > 0.0f ? s : 0.0f;
      }
    }
  }

  // conv2 as nine accumulated [32 x 16] x [16 x chunk] products over the flattened padded
  // map: output pixel (r, c) sits at r * wp + c and tap (dy, dx) reads (r + dy) * wp + c + dx.
  // Columns cols and cols + 1 of each output row are junk and ignored.
  ws.pooled.assign(kC2 * cols, 0.0f);
  ws.conv2.resize(kC2 * kRowChunk * wp);
  for (int64_t r0 = 0; r0 < rows; r0 += kRowChunk) {
    const int64_t nr = std::min(kRowChunk, rows - r0), n = nr * wp;
    for (int64_t t = 0; t < 9; ++t) {
      const int64_t dy = t / 3, dx = t % 3;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, kC2, n, kC1, 1.0f, &taps_[t * kC2 * kC1],
                  kC1, &ws.conv1[(r0 + dy) * wp + dx], plane, t == 0 ? 0.0f : 1.0f,
                  ws.conv2.data(), n);
    }
    for (int64_t o = 0; o < kC2; ++o) {
      const float bias = w_.conv2_bias[o];
      float* acc = &ws.pooled[o * cols];
      for (int64_t r = 0; r < nr; ++r) {
        const float* v = &ws.conv2[o * n + r * wp];
        for (int64_t c = 0; c < cols; ++c) {
          const float s = v[c] + bias;
          acc[c] += s > 0.0f ? s : 0.0f;
        }
      }
    }
  }
  const float inv_rows = 1.0f / static_cast<float>(rows);
  for (int64_t c = 0; c < cols; ++c) scores[c] = 0.0f;
  for (int64_t o = 0; o < kC2; ++o) {
    const float w = w_.conv3_weight[o];
    const float* acc = &ws.pooled[o * cols];
    for (int64_t c = 0; c < cols; ++c) scores[c] += w * (acc[c] * inv_rows);
  }
  for (int64_t c = 0; c < cols; ++c) scores[c] += w_.conv3_bias[0];
}

}  // namespace apr::predictor
