#include "backends/cuda/device_utils.cuh"
#include "backends/cuda/qkv_prologue.h"

namespace apr::cuda {
namespace {

constexpr int kThreads = 128;

// One CTA per token. The biases first (every element), then one warp per q or k head:
// sum of squares over head_dim, weight * (x * rsqrt(mean + eps)) as backends/cpu/ops.cc.
__global__ void __launch_bounds__(kThreads) QkvPrologueKernel(const QkvPrologueArgs a) {
  const int hd = a.head_dim, nh = a.num_heads, nkv = a.num_kv_heads;
  float* row = a.qkv + static_cast<int64_t>(blockIdx.x) * (nh + 2 * nkv) * hd;
  if (a.bias != nullptr) {
    for (int t = threadIdx.x; t < (nh + 2 * nkv) * hd; t += kThreads) row[t] += a.bias[t];
    __syncthreads();
  }
  if (a.q_norm == nullptr) return;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int h = warp; h < nh + nkv; h += kThreads / 32) {
    float* x = row + h * hd;
    const float* w = h < nh ? a.q_norm : a.k_norm;
    float ss = 0.f;
    for (int j = lane; j < hd; j += 32) ss += x[j] * x[j];
    ss = WarpSum(ss);
    const float inv = rsqrtf(ss / static_cast<float>(hd) + a.eps);
    for (int j = lane; j < hd; j += 32) x[j] = w[j] * (x[j] * inv);
  }
}

}  // namespace

cudaError_t LaunchQkvPrologue(const QkvPrologueArgs& a, cudaStream_t stream) {
  if (a.n == 0 || !QkvPrologueNeeded(a)) return cudaSuccess;
  if ((a.q_norm == nullptr) != (a.k_norm == nullptr)) return cudaErrorInvalidValue;
  QkvPrologueKernel<<<a.n, kThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace apr::cuda
