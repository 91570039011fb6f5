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

// Layouts: width wp = cols + 2 and height rows + 2 with a zero border; pixel (r, c) of
// the input or of a conv1 channel lives at (r + 1) * wp + (c + 1) of its plane.
void PredictorCnn::LoadInput(const float* x, int64_t rows, int64_t cols, int64_t stride,
                             CnnWorkspace& ws) const {
  const int64_t wp = cols + 2, plane = (rows + 2) * wp;
  ws.input.assign(plane, 0.0f);
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(&ws.input[(r + 1) * wp + 1], x + r * stride, sizeof(float) * cols);
}

// ReLU(conv1) of image rows [r0, r1).
void PredictorCnn::Conv1Rows(int64_t r0, int64_t r1, CnnWorkspace& ws) const {
  const int64_t cols = ws.cols, wp = cols + 2, plane = (ws.rows + 2) * wp;
  for (int64_t o = 0; o < kC1; ++o) {
    const float* k = &w_.conv1_weight[o * 9];
    const float bias = w_.conv1_bias[o];
    float* out = &ws.conv1[o * plane];
    for (int64_t r = r0; r < r1; ++r) {
      const float* in0 = &ws.input[r * wp];  // image row r - 1, padded
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
}

// ReLU(conv2) of image rows [r0, r1), as nine accumulated [32 x 16] x [16 x n] products
// over the flattened padded conv1 map: output pixel (r, c) sits at (r - r0) * wp + c of
// the chunk and tap (dy, dx) reads (r + dy) * wp + c + dx. Columns cols and cols + 1 of
// each chunk row are junk and dropped.
void PredictorCnn::Conv2Rows(int64_t r0, int64_t r1, CnnWorkspace& ws) const {
  const int64_t cols = ws.cols, wp = cols + 2, plane = (ws.rows + 2) * wp;
  ws.chunk.resize(kC2 * kRowChunk * wp);
  for (int64_t a = r0; a < r1; a += kRowChunk) {
    const int64_t nr = std::min(kRowChunk, r1 - a), n = nr * wp;
    for (int64_t t = 0; t < 9; ++t) {
      const int64_t dy = t / 3, dx = t % 3;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, kC2, n, kC1, 1.0f,
                  &taps_[t * kC2 * kC1], kC1, &ws.conv1[(a + dy) * wp + dx], plane,
                  t == 0 ? 0.0f : 1.0f, ws.chunk.data(), n);
    }
    for (int64_t r = 0; r < nr; ++r) {
      for (int64_t o = 0; o < kC2; ++o) {
        const float bias = w_.conv2_bias[o];
        const float* v = &ws.chunk[o * n + r * wp];
        float* dst = &ws.conv2[((a + r) * kC2 + o) * cols];
        for (int64_t c = 0; c < cols; ++c) {
          const float s = v[c] + bias;
          dst[c] = s > 0.0f ? s : 0.0f;
        }
      }
    }
  }
}

// Mean over rows (summed in row order, then scaled), then the 1x1 conv1d.
void PredictorCnn::Pool(float* scores, CnnWorkspace& ws) const {
  const int64_t rows = ws.rows, cols = ws.cols;
  ws.pooled.assign(kC2 * cols, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < kC2; ++o) {
      const float* v = &ws.conv2[(r * kC2 + o) * cols];
      float* acc = &ws.pooled[o * cols];
      for (int64_t c = 0; c < cols; ++c) acc[c] += v[c];
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

void PredictorCnn::Predict(const float* x, int64_t rows, int64_t cols, int64_t stride,
                           float* scores, CnnWorkspace& ws) const {
  ws.rows = rows, ws.cols = cols;
  const int64_t plane = (rows + 2) * (cols + 2);
  LoadInput(x, rows, cols, stride, ws);
  ws.conv1.assign(kC1 * plane + 2, 0.0f);
  Conv1Rows(0, rows, ws);
  ws.conv2.resize(rows * kC2 * cols);
  Conv2Rows(0, rows, ws);
  Pool(scores, ws);
}

void PredictorCnn::PredictShifted(const float* x, int64_t rows, int64_t cols, int64_t stride,
                                  float* scores, CnnWorkspace& ws) const {
  if (ws.rows != rows || ws.cols != cols || rows < 6) {
    Predict(x, rows, cols, stride, scores, ws);
    return;
  }
  const int64_t wp = cols + 2, plane = (rows + 2) * wp;
  LoadInput(x, rows, cols, stride, ws);
  // conv1: new row j = old row j + 1 for j in [1, rows - 3] (its inputs j - 1 .. j + 1 were
  // old rows j .. j + 2, none of them padding or new). Rows 0, rows - 2, rows - 1 change.
  for (int64_t o = 0; o < kC1; ++o) {
    float* p = &ws.conv1[o * plane];
    std::memmove(p + 2 * wp, p + 3 * wp, sizeof(float) * (rows - 3) * wp);
  }
  Conv1Rows(0, 1, ws);
  Conv1Rows(rows - 2, rows, ws);
  // conv2: new row i = old row i + 1 for i in [2, rows - 4]; rows 0, 1 and the last 3 change.
  std::memmove(&ws.conv2[2 * kC2 * cols], &ws.conv2[3 * kC2 * cols],
               sizeof(float) * (rows - 5) * kC2 * cols);
  Conv2Rows(0, 2, ws);
  Conv2Rows(rows - 3, rows, ws);
  Pool(scores, ws);
}

}  // namespace apr::predictor
