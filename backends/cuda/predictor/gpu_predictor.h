// The attention predictor on the GPU (docs/CUDA.md "Decode step"): per sequence slot the
// history rings the attention writes, the CNN's weights, incremental state and scores,
// and the selection the next step's block lists are built from. CudaDecoder owns one and
// calls it with the step's batch; the predictor reads that batch from the decoder's step
// inputs on the device, never from the decoder itself.
#ifndef APRUNTIME_BACKENDS_CUDA_PREDICTOR_GPU_PREDICTOR_H_
#define APRUNTIME_BACKENDS_CUDA_PREDICTOR_GPU_PREDICTOR_H_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "backends/cuda/device_buffer.h"
#include "backends/cuda/predictor/predictor_cnn.h"
#include "backends/cuda/predictor/topk_select.h"
#include "backends/cuda/rope_append.h"

namespace apr::cuda {

// Sizes fixed when the decoder is created.
struct GpuPredictorShape {
  int max_sequences = 0;
  int layers = 0;       // the model's: the history has a ring for every layer
  int first_layer = 0;  // the first predicted layer (SparseOptions::dense_layers)
  int heads = 0, kv_heads = 0, head_dim = 0;
  int max_blocks = 0;    // history and score columns
  int k_blocks_max = 0;  // predicted blocks of the largest budget (the selection's stride)
  int predicted_layers() const { return layers - first_layer; }
};

// The decoder's per-step inputs the launches read: [max_sequences] int32 each, on the
// device, filled before every launch; and its error flag (an image with more candidates
// than the top-k takes sets it).
struct PredictInputs {
  const int32_t* next_lens = nullptr;      // context length of the predicted step
  const int32_t* seq_slots = nullptr;      // sequence slot of each batch entry
  const int32_t* history_row = nullptr;    // the newest history ring row
  const int32_t* history_count = nullptr;  // rows appended since the history began
  int32_t* error = nullptr;
};

// One prediction for the batch in the inputs: predicted layers [layer_begin,
// layer_begin + layer_count) (relative to first_layer; layer_count 0: all).
struct PredictLaunch {
  int batch = 0;
  int max_cols = 0;        // the CNN grid covers this many candidate columns
  bool recompute = false;  // the CNN recomputes every column (picks its launch shape)
  int k_blocks = 0;        // predicted blocks per KV head (PredictedBlocks(budget))
  int query_blocks = 0;    // predictor-hybrid: TopkArgs::query_blocks
  int layer_begin = 0, layer_count = 0;
};

class GpuPredictor {
 public:
  // 0 (the default) or a launch shape the CNN takes (predictor_cnn.h).
  static absl::Status CheckTilesPerCta(int tiles);
  // `weights`: PredictorLayout::kSize floats. Buffers are filled with `fill_byte` first
  // unless negative; the CNN's fragments are packed on `stream`.
  static absl::StatusOr<std::unique_ptr<GpuPredictor>> Create(const GpuPredictorShape& shape,
                                                              const PredictInputs& inputs,
                                                              absl::Span<const float> weights,
                                                              bool incremental, int tiles_per_cta,
                                                              int fill_byte, cudaStream_t stream);
  ~GpuPredictor();
  GpuPredictor(const GpuPredictor&) = delete;
  GpuPredictor& operator=(const GpuPredictor&) = delete;

  // CNN + top-k on `stream`.
  absl::Status PredictFor(const PredictLaunch& p, cudaStream_t stream);
  // PredictFor's two halves: the CNN's scores, then the top-k selection from them.
  absl::Status PredictScores(const PredictLaunch& p, cudaStream_t stream);
  absl::Status SelectTopk(const PredictLaunch& p, cudaStream_t stream);
  // The per-slot selections as the top-k and list kernels take them.
  Selection SelectionView() const;
  // Forgets the incremental CNN state of a sequence slot (its history was rewritten).
  absl::Status InvalidateCnnState(int slot, cudaStream_t stream);

  // Settings for later launches. SetIncremental forgets every slot's CNN state (waits).
  absl::Status SetIncremental(bool on);
  void SetTilesPerCta(int tiles) { tiles_per_cta_ = tiles; }

  // [sequence slots][layers][kv_heads][kHistoryRing][max_blocks]: the decode attention
  // writes a row per step, the CNN reads the window.
  float* history() const { return history_.get(); }
  // Random rows for a sequence slot's every layer (FillRandomContext).
  absl::Status FillRandomHistory(int slot, uint64_t seed, cudaStream_t stream);
  // Prefill keeps the queries of the prompt's last kHistoryRows tokens: layer `layer`'s
  // `rows` rows from `q` ([rows][heads][head_dim]) as saved rows [row, row + rows).
  absl::Status SaveQueries(int layer, int64_t row, const float* q, int64_t rows,
                           cudaStream_t stream);
  // The history's initial rows of `seq_slot` for every predicted layer: the attention of
  // the `rows` saved queries (the first at position first_pos) over the keys in `pool`.
  absl::Status InitHistory(const __nv_bfloat16* pool, const SlotTable& table, int seq_slot,
                           int rows, int first_pos, bool cuda_cores, cudaStream_t stream);

  // The side stream: predictions there overlap the step's later layers. The predictor
  // owns it because only predictor launches run on it. ForkSideStream makes it wait for
  // `main`'s work so far through event `point` (one per layer, so every fork of a
  // captured step is its own node); JoinSideStream makes `main` wait for it.
  absl::Status ForkSideStream(int point, cudaStream_t main);
  absl::Status JoinSideStream(cudaStream_t main);
  cudaStream_t side_stream() const { return side_stream_; }

 private:
  GpuPredictor(const GpuPredictorShape& shape, const PredictInputs& inputs, bool incremental,
               int tiles_per_cta);
  absl::Status AllocateCnn(absl::Span<const float> weights, int fill, cudaStream_t stream);
  absl::Status AllocateRest(int fill);

  GpuPredictorShape shape_;
  PredictInputs in_;
  bool incremental_ = true;
  int tiles_per_cta_ = 0;
  int sel_stride_ = 0;
  DeviceBuffer<float> predictor_w_, history_, scores_, q_save_;
  DeviceBuffer<float> history_scratch_;  // PrefillHistoryArgs::scratch
  DeviceBuffer<int32_t> sel_blocks_, sel_counts_, sel_lens_;
  DeviceBuffer<float> cnn_interior_, cnn_row_r_;  // CnnState: I per column, R per ring row
  DeviceBuffer<uint2> cnn_fragments_;
  PredictorConv1 cnn_conv1_;  // conv1 by value for every CNN launch
  DeviceBuffer<int32_t> cnn_count_, cnn_width_;
  cudaStream_t side_stream_ = nullptr;
  std::vector<cudaEvent_t> layer_events_;
  cudaEvent_t side_done_ = nullptr;
};

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_PREDICTOR_GPU_PREDICTOR_H_
