// The benchmark's access to CudaDecoder switches that exist to time one part of the step
// against another (the GEMV kernel, PDL, the predictor's variants, skipping prediction)
// and to give sequences random contexts without running the model. They are private in
// CudaDecoder so that serving code cannot reach them; Bazel visibility limits this header
// to bench/ and the backend's own tests.
#ifndef APRUNTIME_BACKENDS_CUDA_CUDA_DECODER_BENCH_PEER_H_
#define APRUNTIME_BACKENDS_CUDA_CUDA_DECODER_BENCH_PEER_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "backends/cuda/cuda_decoder.h"

namespace apr::cuda {

class CudaDecoderBenchPeer {
 public:
  // Decode projections through the custom GEMV up to `gemv_max_tokens` tokens, cuBLAS
  // above (use_gemv false: cuBLAS always).
  static absl::Status SetUseGemv(CudaDecoder& d, bool use_gemv,
                                 int gemv_max_tokens = kGemvMaxTokens,
                                 GemvKernel kernel = GemvKernel::kAuto) {
    return d.SetUseGemv(use_gemv, gemv_max_tokens, kernel);
  }
  static absl::Status SetUsePdl(CudaDecoder& d, bool use_pdl) { return d.SetUsePdl(use_pdl); }
  static absl::Status SetIncrementalPredictor(CudaDecoder& d, bool on) {
    return d.SetIncrementalPredictor(on);
  }
  static absl::Status SetOverlapPredictorMaxBatch(CudaDecoder& d, int max_batch) {
    return d.SetOverlapPredictorMaxBatch(max_batch);
  }
  static absl::Status SetPredictorTilesPerCta(CudaDecoder& d, int tiles) {
    return d.SetPredictorTilesPerCta(tiles);
  }
  // Sparse steps keep the previous selection instead of predicting (no CNN, no top-k):
  // the baseline for what the predictor costs inside a step. Resident KV only.
  static absl::Status SetSkipPrediction(CudaDecoder& d, bool skip) {
    return d.SetSkipPrediction(skip);
  }
  // Gives `seq` (empty) `len` tokens of context without running the model: its blocks
  // keep whatever the pool holds (FillPoolRandom), its history rows are random, and the
  // predictor selects its first blocks.
  static absl::Status FillRandomContext(CudaDecoder& d, Sequence& seq, int64_t len, uint64_t seed) {
    return d.FillRandomContext(seq, len, seed);
  }
  static absl::Status FillPoolRandom(CudaDecoder& d, uint64_t seed) {
    return d.FillPoolRandom(seed);
  }
  // Only the predictor (CNN + top-k) for the batch's next step, queued; for timing it.
  // With `advance_window` the history window first moves by one ring row as a decode
  // step would move it, so the incremental CNN path runs.
  static absl::Status PredictAsync(CudaDecoder& d, absl::Span<Sequence* const> seqs,
                                   bool advance_window = false) {
    return d.PredictAsync(seqs, advance_window);
  }
};

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_CUDA_DECODER_BENCH_PEER_H_
