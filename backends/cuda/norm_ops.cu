#include "backends/cuda/device_utils.cuh"
#include "backends/cuda/norm_ops.h"

namespace apr::cuda {
namespace {

__global__ void EmbeddingKernel(const int32_t* __restrict__ tokens, const bf16* __restrict__ table,
                                int hidden, float* __restrict__ x) {
  const int i = blockIdx.x;
  const bf16* row = table + static_cast<int64_t>(tokens[i]) * hidden;
  float* out = x + static_cast<int64_t>(i) * hidden;
  for (int j = threadIdx.x; j < hidden; j += blockDim.x) out[j] = __bfloat162float(row[j]);
}

// One block per row. The row is read twice (sum of squares, then scale); the second read
// hits L1/L2 (a row is 16 KB at hidden 4096).
__global__ void RmsNormKernel(const float* __restrict__ x, const float* __restrict__ weight,
                              int hidden, float eps, bf16* __restrict__ out) {
  PdlTrigger();  // the projection after this may start loading its weights
  __shared__ float scratch[32];
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * hidden;
  bf16* o = out + static_cast<int64_t>(blockIdx.x) * hidden;
  float ss = 0;
  if (hidden % 4 == 0) {
    for (int j = threadIdx.x * 4; j < hidden; j += blockDim.x * 4) {
      const float4 v = *reinterpret_cast<const float4*>(xr + j);
      ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
  } else {
    for (int j = threadIdx.x; j < hidden; j += blockDim.x) ss += xr[j] * xr[j];
  }
  ss = BlockSum(ss, scratch);
  const float inv = rsqrtf(ss / hidden + eps);
  for (int j = threadIdx.x; j < hidden; j += blockDim.x) {
    o[j] = __float2bfloat16_rn(weight[j] * (xr[j] * inv));
  }
}

__global__ void SwiGluKernel(const bf16* __restrict__ gu, int inter, bf16* __restrict__ out) {
  const int i = blockIdx.y;
  const bf16* g = gu + static_cast<int64_t>(i) * 2 * inter;
  const bf16* u = g + inter;
  bf16* o = out + static_cast<int64_t>(i) * inter;
  for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < inter; j += gridDim.x * blockDim.x) {
    const float a = __bfloat162float(g[j]);
    o[j] = __float2bfloat16_rn(a / (1.0f + __expf(-a)) * __bfloat162float(u[j]));
  }
}

}  // namespace

cudaError_t LaunchEmbedding(const int32_t* tokens, int n, const bf16* table, int hidden, float* x,
                            cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  EmbeddingKernel<<<n, 256, 0, stream>>>(tokens, table, hidden, x);
  return cudaGetLastError();
}

cudaError_t LaunchRmsNorm(const float* x, const float* weight, int n, int hidden, float eps,
                          bf16* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  RmsNormKernel<<<n, hidden >= 1024 ? 512 : 128, 0, stream>>>(x, weight, hidden, eps, out);
  return cudaGetLastError();
}

cudaError_t LaunchSwiGlu(const bf16* gu, int n, int inter, bf16* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const dim3 grid(CeilDivInt(inter, 256) < 64 ? CeilDivInt(inter, 256) : 64, n);
  SwiGluKernel<<<grid, 256, 0, stream>>>(gu, inter, out);
  return cudaGetLastError();
}

}  // namespace apr::cuda
