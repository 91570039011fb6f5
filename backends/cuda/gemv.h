// y = x W^T for a few tokens (decode batches of 1 to 8): one pass over the bf16 weight
// matrix with 16-byte streaming loads, float32 accumulation, and the epilogue fused.
// W is PyTorch's nn.Linear layout, [m][k] row-major; x is [n][k] bf16. Two kernels: FMAs on
// the CUDA cores (a few tokens), and mma.sync on the tensor cores (more tokens: at 8 the
// CUDA cores' multiply-adds, not the reads, bound the first kernel; gemv_mma.cu).
#ifndef APRUNTIME_BACKENDS_CUDA_GEMV_H_
#define APRUNTIME_BACKENDS_CUDA_GEMV_H_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace apr::cuda {

constexpr int kGemvMaxTokens = 8;
// kAuto takes the tensor cores from this many tokens on: on the H100 the CUDA-core kernel
// is faster up to 4 tokens, the tensor-core one from 5 (docs/PERFORMANCE.md, "Kernels
// alone").
constexpr int kGemvTensorCoreMinTokens = 5;

enum class GemvKernel {
  kAuto,
  kCudaCores,
  kTensorCores,
};

enum class GemvEpilogue {
  kStore,       // y[t][r] = acc            (float32 y, row stride ldy)
  kAccumulate,  // y[t][r] += acc           (the residual add of o_proj and down_proj)
  kSwiGlu,      // W is [2m][k] (gate rows, then up rows); out[t][r] = bf16(silu(g) * u)
};

struct GemvArgs {
  const __nv_bfloat16* w = nullptr;  // [m][k] ([2m][k] for kSwiGlu)
  const __nv_bfloat16* x = nullptr;  // [n][k]
  int m = 0, k = 0, n = 0;           // k % 8 == 0, 1 <= n <= kGemvMaxTokens
  GemvEpilogue epilogue = GemvEpilogue::kStore;
  float* y = nullptr;  // kStore / kAccumulate: [n][ldy]
  int ldy = 0;
  __nv_bfloat16* out = nullptr;  // kSwiGlu: [n][m]
  // Launch with programmatic dependent launch (device_utils.cuh PdlWait): the weight loads
  // start while the previous kernel in the stream finishes.
  bool pdl = false;
  GemvKernel kernel = GemvKernel::kAuto;
};

// cudaErrorInvalidValue for shapes it does not handle (k % 8, n out of range, odd m for
// kSwiGlu).
cudaError_t LaunchGemv(const GemvArgs& a, cudaStream_t stream);

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_GEMV_H_
