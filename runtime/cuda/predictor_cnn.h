// The attention predictor's CNN (DESIGN.md section 2) on the GPU, for every (sequence,
// layer, KV head) image of a batch in one launch.
//
// Image of (b, layer, g): the history's 64 rows (oldest first; the ring's newest row is
// history_row[b]) and one column per candidate block of the step being predicted for,
// i.e. history columns [4, 4 + NumCandidates(next_len)) (block_rules.h). Output: one
// score per column. Images that need no prediction (NeedsPrediction false) are skipped.
//
// conv1 (1 -> 16, 3x3) + ReLU runs on the CUDA cores into shared memory (bf16); conv2
// (16 -> 32, 3x3) runs on the tensor cores as an implicit GEMM (mma.sync m16n8k16 bf16,
// float32 accumulation; ldmatrix gathers the 3x3 taps straight from the conv1 tile), with
// bias, ReLU and the sum over time fused; the kernel-1 conv1d finishes the column.
#ifndef APRUNTIME_RUNTIME_CUDA_PREDICTOR_CNN_H_
#define APRUNTIME_RUNTIME_CUDA_PREDICTOR_CNN_H_

#include <cuda_runtime.h>

#include <cstdint>

namespace apr::cuda {

// Packed float32 parameters (docs/ARCHITECTURE.md "Predictor weights"), in this order.
struct PredictorLayout {
  static constexpr int kConv1W = 0;                  // [16][1][3][3]
  static constexpr int kConv1B = kConv1W + 16 * 9;   // [16]
  static constexpr int kConv2W = kConv1B + 16;       // [32][16][3][3]
  static constexpr int kConv2B = kConv2W + 32 * 16 * 9;  // [32]
  static constexpr int kConv3W = kConv2B + 32;       // [32]
  static constexpr int kConv3B = kConv3W + 32;       // [1]
  static constexpr int kSize = kConv3B + 1;
};

struct HistoryView {
  // [sequence slots][layers][kv_heads][rows][cols] float32.
  float* data = nullptr;
  int layers = 0, kv_heads = 0, rows = 0, cols = 0;
};

struct PredictorCnnArgs {
  const float* weights = nullptr;  // PredictorLayout::kSize floats
  int batch = 0;
  int first_layer = 0, num_layers = 0;  // the predicted layers [first, first + num)
  int num_kv_heads = 0;
  const int32_t* next_lens = nullptr;    // [batch] context length of the predicted step
  const int32_t* seq_slots = nullptr;    // [batch]
  const int32_t* history_row = nullptr;  // [batch] the newest history row
  HistoryView history;
  int k_blocks = 0;  // predicted blocks per KV head (PredictedBlocks(budget))
  int max_cols = 0;  // launch covers this many candidate columns (grid size)
  // [batch][num_layers][kv_heads][score_cols]
  float* scores = nullptr;
  int score_cols = 0;
};

cudaError_t LaunchPredictorCnn(const PredictorCnnArgs& a, cudaStream_t stream);

}  // namespace apr::cuda

#endif  // APRUNTIME_RUNTIME_CUDA_PREDICTOR_CNN_H_
