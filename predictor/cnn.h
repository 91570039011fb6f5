// The attention predictor's CNN on the CPU (docs/DESIGN.md section 2, docs/ARCHITECTURE.md
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

// Scratch memory for Predict, and the intermediate maps of the last call, which
// PredictShifted reuses. One per caller (per history when PredictShifted is used).
struct CnnWorkspace {
  std::vector<float> input;   // zero-padded input [rows + 2][cols + 2]
  std::vector<float> conv1;   // zero-padded ReLU(conv1) [16][rows + 2][cols + 2] (+2 slack)
  std::vector<float> conv2;   // ReLU(conv2) [rows][32][cols]
  std::vector<float> chunk;   // conv2 scratch [32][chunk rows * (cols + 2)]
  std::vector<float> pooled;  // [32][cols]
  int64_t rows = -1, cols = -1;  // geometry of the maps held; -1: none
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

  // The same scores as Predict, faster, when `ws` holds the maps of a call on an input
  // that this one equals shifted up by one row (oldest row dropped, one new last row; same
  // rows and cols): only the 3 conv1 rows and 5 conv2 rows whose receptive field changed
  // are recomputed, with the same per-pixel arithmetic. Falls back to Predict when the
  // workspace geometry differs or rows < 6. The caller guarantees the shift relation.
  void PredictShifted(const float* x, int64_t rows, int64_t cols, int64_t stride, float* scores,
                      CnnWorkspace& ws) const;

  const CnnWeights& weights() const { return w_; }
  int64_t num_parameters() const;

 private:
  explicit PredictorCnn(CnnWeights w);
  void LoadInput(const float* x, int64_t rows, int64_t cols, int64_t stride, CnnWorkspace& ws) const;
  void Conv1Rows(int64_t r0, int64_t r1, CnnWorkspace& ws) const;
  void Conv2Rows(int64_t r0, int64_t r1, CnnWorkspace& ws) const;
  void Pool(float* scores, CnnWorkspace& ws) const;
  CnnWeights w_;
  std::vector<float> taps_;  // conv2 weights per tap (dy, dx): [9][32][16]
};

}  // namespace apr::predictor

#endif  // APRUNTIME_PREDICTOR_CNN_H_
