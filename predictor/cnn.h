// The attention predictor's CNN on the CPU (DESIGN.md section 2, docs/ARCHITECTURE.md
// "Predictor weights"): one image per KV head, [H rows (time, oldest first)][N blocks] in,
// one score per block out.
//   conv2d(1 -> 16, 3x3, pad 1) -> ReLU -> conv2d(16 -> 32, 3x3, pad 1) -> ReLU
//   -> mean over rows -> conv1d(32 -> 1, kernel 1)
#ifndef APRUNTIME_PREDICTOR_CNN_H_
#define APRUNTIME_PREDICTOR_CNN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace apr::predictor {

struct CnnWeights {
  static constexpr int64_t kC1 = 16, kC2 = 32;
  std::vector<float> conv1_weight;  // [16][1][3][3]
  std::vector<float> conv1_bias;    // [16]
  std::vector<float> conv2_weight;  // [32][16][3][3]
  std::vector<float> conv2_bias;    // [32]
  std::vector<float> conv3_weight;  // [1][32][1]
  std::vector<float> conv3_bias;    // [1]
};

// Scratch memory for Predict; reuse one per caller to avoid reallocation.
struct CnnWorkspace {
  std::vector<float> input, conv1, conv2, pooled;
};

class PredictorCnn {
 public:
  // InvalidArgument if any tensor has the wrong size.
  static absl::StatusOr<PredictorCnn> FromWeights(CnnWeights w);
  // Reads the six F32 tensors (names and shapes in docs/ARCHITECTURE.md) from a
  // safetensors file; any missing, extra-shaped or non-F32 tensor is an error naming it.
  static absl::StatusOr<PredictorCnn> Load(const std::string& path);

  // x[r * stride + c] for r < rows, c < cols; writes scores[0, cols). rows, cols >= 1.
  void Predict(const float* x, int64_t rows, int64_t cols, int64_t stride, float* scores,
               CnnWorkspace& ws) const;

  const CnnWeights& weights() const { return w_; }
  int64_t num_parameters() const;

 private:
  explicit PredictorCnn(CnnWeights w);
  CnnWeights w_;
  std::vector<float> taps_;  // conv2 weights per tap (dy, dx): [9][32][16]
};

}  // namespace apr::predictor

#endif  // APRUNTIME_PREDICTOR_CNN_H_
