// Deterministic pseudo-random fills on the device (a counter hash: no cuRAND state), for
// the benchmark's weights and KV cache and for poisoning buffers in tests.
#ifndef APRUNTIME_BACKENDS_CUDA_FILL_H_
#define APRUNTIME_BACKENDS_CUDA_FILL_H_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace apr::cuda {

// x[i] = bf16(scale * u), u uniform in [-1, 1) from hash(seed, i).
cudaError_t FillUniformBf16(__nv_bfloat16* x, int64_t n, uint64_t seed, float scale,
                            cudaStream_t stream);
cudaError_t FillUniformF32(float* x, int64_t n, uint64_t seed, float scale, float offset,
                           cudaStream_t stream);
// x[i] = value (e.g. NaN to poison an output).
cudaError_t FillF32(float* x, int64_t n, float value, cudaStream_t stream);
cudaError_t FillBf16Bits(__nv_bfloat16* x, int64_t n, uint16_t bits, cudaStream_t stream);

// Reads `bytes` (a multiple of 16) once with 16-byte streaming loads and folds them into
// *sink: the read-bandwidth probe of the benchmark.
cudaError_t ReadAll(const void* p, int64_t bytes, unsigned* sink, cudaStream_t stream);

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_FILL_H_
