#include <climits>
#include <cmath>

#include "backends/cuda/argmax_rows.h"

namespace apr::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr unsigned kFullMask = 0xffffffffu;

// (value, index) pairs ordered by value, then by the lower index: the greedy rule.
__device__ __forceinline__ void Keep(float v, int i, float* best, int* idx) {
  if (v > *best || (v == *best && i < *idx)) {
    *best = v;
    *idx = i;
  }
}

__device__ __forceinline__ void WarpReduce(float* best, int* idx) {
  for (int off = 16; off > 0; off >>= 1) {
    const float v = __shfl_down_sync(kFullMask, *best, off);
    const int i = __shfl_down_sync(kFullMask, *idx, off);
    Keep(v, i, best, idx);
  }
}

__global__ void __launch_bounds__(kThreads)
    ArgMaxRowsKernel(const float* __restrict__ logits, int vocab, int32_t* __restrict__ out) {
  const float* row = logits + static_cast<size_t>(blockIdx.x) * vocab;
  // -inf with no index: a row of -inf still picks its first entry (INT_MAX loses ties).
  float best = -INFINITY;
  int idx = INT_MAX;
  for (int i = threadIdx.x; i < vocab; i += kThreads) Keep(row[i], i, &best, &idx);
  WarpReduce(&best, &idx);
  __shared__ float warp_best[kThreads / 32];
  __shared__ int warp_idx[kThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    warp_best[warp] = best;
    warp_idx[warp] = idx;
  }
  __syncthreads();
  if (warp != 0) return;
  best = warp_best[lane];
  idx = warp_idx[lane];
  WarpReduce(&best, &idx);
  if (lane == 0) out[blockIdx.x] = idx == INT_MAX ? 0 : idx;
}

}  // namespace

cudaError_t LaunchArgMaxRows(const float* logits, int rows, int vocab, int32_t* out,
                             cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  if (vocab <= 0) return cudaErrorInvalidValue;
  ArgMaxRowsKernel<<<rows, kThreads, 0, stream>>>(logits, vocab, out);
  return cudaGetLastError();
}

}  // namespace apr::cuda
