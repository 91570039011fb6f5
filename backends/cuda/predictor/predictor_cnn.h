// The attention predictor's CNN (docs/DESIGN.md section 2) on the GPU, for every (sequence,
// layer, KV head) image of a batch in one launch.
//
// Image of (b, layer, g): the 64 newest rows of the history ring (oldest first; the ring's
// newest row is history_row[b]) and one column per candidate block of the step being
// predicted for, i.e. history columns [4, 4 + NumCandidates(next_len)) (block_rules.h).
// Output: one score per column. Images that need no prediction are skipped.
//
// Full path: conv1 (1 -> 16, 3x3) + ReLU on the CUDA cores into shared memory (bf16);
// conv2 (16 -> 32, 3x3) on the tensor cores as an implicit GEMM (mma.sync m16n8k16 bf16,
// float32 accumulation; ldmatrix gathers the 3x3 taps straight from the conv1 tile), bias,
// ReLU and the sum over the 64 rows fused; the kernel-1 conv1d finishes each column.
//
// Incremental path (with a CnnState): the kernel-1 conv1d is linear, so a column's score is
// b3 + (1/64) sum over rows of R(row), R = sum_ch w3 * ReLU(conv2 + b2). Rows 2..61 of the
// window ("interior": their 5-row receptive field lies inside it) depend only on the
// history rows, not on where the window starts; the state keeps their sum I per column.
// The state also keeps each interior row's R at its ring row, so when the window moved by
// exactly one row since the state was made, I_new = I_old + (R(new row 61, made and kept)
// - R(old row 2, kept)), the difference first (equal R leave I bit-exact), and the edge
// rows 0, 1, 62, 63 (padding in their receptive field) are recomputed: 5 conv2 rows
// instead of 64 (the full path seeds both). When the candidate set grew, the column tiles
// whose receptive field reaches the image's previous right edge take the full path; so do
// stale states and every kCnnRefreshSteps-th step.
#ifndef APRUNTIME_BACKENDS_CUDA_PREDICTOR_PREDICTOR_CNN_H_
#define APRUNTIME_BACKENDS_CUDA_PREDICTOR_PREDICTOR_CNN_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "backends/cuda/block_rules.h"

namespace apr::cuda {

// Packed float32 parameters (docs/ARCHITECTURE.md "Predictor weights"), in this order.
struct PredictorLayout {
  static constexpr int kConv1W = 0;                      // [16][1][3][3]
  static constexpr int kConv1B = kConv1W + 16 * 9;       // [16]
  static constexpr int kConv2W = kConv1B + 16;           // [32][16][3][3]
  static constexpr int kConv2B = kConv2W + 32 * 16 * 9;  // [32]
  static constexpr int kConv3W = kConv2B + 32;           // [32]
  static constexpr int kConv3B = kConv3W + 32;           // [1]
  static constexpr int kSize = kConv3B + 1;
};

struct HistoryView {
  // [sequence slots][layers][kv_heads][rows][cols] float32; rows is the ring size (>= 64).
  float* data = nullptr;
  int layers = 0, kv_heads = 0, rows = 0, cols = 0;
};

// Incremental state per image, [sequence slots][num_layers][kv_heads] (num_layers: the
// predicted layers). An image's state is valid for history count `count` (>= 0).
constexpr int kCnnRefreshSteps = 256;
struct CnnState {
  float* interior = nullptr;  // [...][cols]: I, the sum of R over the window's rows 2..61
  // [...][history ring rows][cols]: R of the rows that were interior rows when computed,
  // at their history ring row (the incremental path takes out the leaving row's).
  float* row_r = nullptr;
  int32_t* count = nullptr;  // history count the sums are for; negative: none
  int32_t* width = nullptr;  // candidate columns they cover
  int cols = 0;
};

// conv2's weights as per-lane mma B fragments (9 taps x 4 n-tiles x 32 lanes x 2 bf16x2
// registers), made once from the packed float32 parameters.
constexpr int kPredictorFragments = 9 * 4 * 32;
cudaError_t LaunchPackPredictorFragments(const float* weights, uint2* fragments,
                                         cudaStream_t stream);

// conv1's weights and biases by value in the launch's parameters: every thread reads the
// same address there, so the multiply-adds take them as constant operands instead of
// shared-memory loads (the incremental path's largest instruction count).
struct PredictorConv1 {
  float w[16 * 9];  // [16 out][3][3], as PredictorLayout::kConv1W
  float b[16];
  bool loaded = false;
};
// From the packed float32 parameters on the host (PredictorLayout::kSize floats).
PredictorConv1 MakePredictorConv1(const float* host_weights);

// Column tiles (16 columns each) per CTA: a multiple of its 4 warps.
// 32: each warp computes 8 tiles in turn, and a per-layer launch on the side stream
// (batch 1) takes fewer SMs from the layers running beside it. Measured in the step on the
// H100 (docs/PERFORMANCE.md): 128K batch 1 6.3% against 11.1% at 8 tiles, 32K 2.3% against
// 3.0%; 64 tiles leave the side stream too few CTAs (10% at 32K).
constexpr int kDefaultCnnTilesPerCta = 32;
// A launch whose images are recomputed (no state yet, a refresh, or no incremental path):
// every tile takes the 64-row path, and CTAs of 8 tiles spread it over four times the SMs.
// With 32, a refresh step on the side stream cost 12.7 ms more than a step without
// prediction at 128K batch 1, against 4.4 ms with 8 (docs/PERFORMANCE.md).
constexpr int kRecomputeCnnTilesPerCta = 8;
// Whether a step whose history count (rows appended since the history began, this step's
// row included) is `count` recomputes the CNN; the kernel's rule, which the host uses to
// pick the launch shape.
APR_HD constexpr bool CnnRecomputes(int64_t count) {
  return count <= 0 || count % kCnnRefreshSteps == 0;
}
constexpr bool ValidCnnTilesPerCta(int t) { return t > 0 && t % 4 == 0 && t <= 64; }

struct PredictorCnnArgs {
  const float* weights = nullptr;    // PredictorLayout::kSize floats
  const uint2* fragments = nullptr;  // kPredictorFragments, from LaunchPackPredictorFragments
  PredictorConv1 conv1;              // MakePredictorConv1 of the same weights
  int batch = 0;
  int first_layer = 0, num_layers = 0;  // the predicted layers [first, first + num)
  // This launch runs the predicted layers [layer_begin, layer_begin + layer_count) of those
  // (indices relative to first_layer); layer_count 0: all.
  int layer_begin = 0, layer_count = 0;
  int num_kv_heads = 0;
  const int32_t* next_lens = nullptr;    // [batch] context length of the predicted step
  const int32_t* seq_slots = nullptr;    // [batch]
  const int32_t* history_row = nullptr;  // [batch] the newest history row
  HistoryView history;
  // Optional incremental state and, per batch entry, the number of rows appended to its
  // history since it was initialised (the state is used when it is for count - 1).
  CnnState state;
  const int32_t* history_count = nullptr;
  int k_blocks = 0;       // predicted blocks per KV head (PredictedBlocks(budget))
  int max_cols = 0;       // launch covers this many candidate columns (grid size)
  int tiles_per_cta = 0;  // 0: kDefaultCnnTilesPerCta
  // [batch][num_layers][kv_heads][score_cols]
  float* scores = nullptr;
  int score_cols = 0;
};

// The CNN, then (with a state) the state's bookkeeping for the next step.
cudaError_t LaunchPredictorCnn(PredictorCnnArgs a, cudaStream_t stream);

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_PREDICTOR_PREDICTOR_CNN_H_
