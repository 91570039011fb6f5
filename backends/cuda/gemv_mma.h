// The tensor-core GEMV (gemv.h's GemvKernel::kTensorCores). Internal to the kernels and the
// benchmark; everything else calls LaunchGemv.
#ifndef APRUNTIME_BACKENDS_CUDA_GEMV_MMA_H_
#define APRUNTIME_BACKENDS_CUDA_GEMV_MMA_H_

#include <cuda_runtime.h>

#include "backends/cuda/gemv.h"

namespace apr::cuda {

// A CTA computes 16 rows of W (kSwiGlu: 8 outputs) with `warps` warps splitting k, each
// keeping `unroll` 32-wide k chunks of its two rows in flight, so that a CTA requests
// warps x unroll x 64 contiguous bytes of each row at once. Built: 4x4, 8x8 (the
// default: measured best on the H100, docs/PERFORMANCE.md), 16x8.
struct GemvMmaShape {
  int warps = 4;
  int unroll = 4;
};
constexpr GemvMmaShape kGemvMmaDefaultShape = {8, 8};

// Shapes as LaunchGemv (already checked); cudaErrorInvalidValue for a shape not built.
cudaError_t LaunchGemvMma(const GemvArgs& a, GemvMmaShape shape, cudaStream_t stream);

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_GEMV_MMA_H_
