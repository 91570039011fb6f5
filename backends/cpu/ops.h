// Float32 building blocks of the CPU reference decoder. Row-major throughout.
#ifndef APRUNTIME_BACKENDS_CPU_OPS_H_
#define APRUNTIME_BACKENDS_CPU_OPS_H_

#include <cstdint>

namespace apr::cpu {

// C[m][n] = A[m][k] * W[n][k]^T: an nn.Linear with PyTorch's [out, in] weight (OpenBLAS).
void MatMulT(const float* a, int64_t m, int64_t k, const float* w, int64_t n, float* c);

// out[r] = x[r] / rms(x[r]) * weight, for `rows` rows of `dim` (out may alias x).
void RmsNorm(const float* x, const float* weight, int64_t rows, int64_t dim, double eps,
             float* out);

// gate[i] = silu(gate[i]) * up[i].
void SiluMul(float* gate, const float* up, int64_t n);

// In-place softmax of x[0..n); returns nothing, max-subtracted for range safety.
void Softmax(float* x, int64_t n);

// x[r][j] += bias[j] for `rows` rows of `dim` (an nn.Linear's bias).
void AddBiasRows(float* x, const float* bias, int64_t rows, int64_t dim);

// dst[i] += src[i].
void AddInPlace(float* dst, const float* src, int64_t n);

}  // namespace apr::cpu

#endif  // APRUNTIME_BACKENDS_CPU_OPS_H_
