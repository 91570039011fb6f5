// Token embedding, RMSNorm and SwiGLU: the small memory-bound steps around the matrix
// products. The residual stream is float32 [tokens][hidden]; the residual *add* happens in
// the projections' epilogue (gemv.h accumulates into it; cuBLAS with beta = 1), so RMSNorm
// is one read of the residual and one bf16 write of the normalised activations.
// Launchers return the launch error (cudaGetLastError) and never synchronise.
#ifndef APRUNTIME_BACKENDS_CUDA_NORM_OPS_H_
#define APRUNTIME_BACKENDS_CUDA_NORM_OPS_H_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace apr::cuda {

// x[i][:] = float(table[tokens[i]][:]) for i < n. table is [vocab][hidden] bf16.
cudaError_t LaunchEmbedding(const int32_t* tokens, int n, const __nv_bfloat16* table, int hidden,
                            float* x, cudaStream_t stream);

// out[i][:] = bf16(weight * x[i] / sqrt(mean(x[i]^2) + eps)), sums in float32.
cudaError_t LaunchRmsNorm(const float* x, const float* weight, int n, int hidden, float eps,
                          __nv_bfloat16* out, cudaStream_t stream);

// out[i][j] = bf16(silu(gu[i][j]) * gu[i][inter + j]); gu is [n][2 * inter] (gate, up).
cudaError_t LaunchSwiGlu(const __nv_bfloat16* gu, int n, int inter, __nv_bfloat16* out,
                         cudaStream_t stream);

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_NORM_OPS_H_
