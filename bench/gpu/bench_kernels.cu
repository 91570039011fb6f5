#include <cuda_bf16.h>

#include "bench/gpu/bench_kernels.h"

namespace apr::bench {
namespace {

__global__ void WeightStreamKernel(const uint4* __restrict__ w, int64_t vecs, uint32_t* sink) {
  uint32_t x = 0;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < vecs;
       i += int64_t{gridDim.x} * blockDim.x) {
    const uint4 v = __ldcs(w + i);
    x ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (x == 0x9e3779b9u) sink[0] = x;  // keeps the loads; practically never taken
}

constexpr int kDim = 128;  // head_dim the attention kernel is written for

// grid (batch * kv_heads, splits), block 32 * group: warp w serves query head
// kv_head * group + w; lane holds dims [4 lane, 4 lane + 4).
__global__ void AttentionPartialKernel(AttentionArgs a) {
  const int bh = blockIdx.x, split = blockIdx.y;
  const int b = bh / a.kv_heads, kvh = bh % a.kv_heads;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int qh = kvh * a.group + warp, q_heads = a.kv_heads * a.group;
  const int splits = gridDim.y;
  const float scale = rsqrtf(static_cast<float>(kDim));
  const float* q = a.q + (int64_t{b} * q_heads + qh) * kDim + lane * 4;
  const float q0 = q[0] * scale, q1 = q[1] * scale, q2 = q[2] * scale, q3 = q[3] * scale;
  float m = -INFINITY, l = 0, acc0 = 0, acc1 = 0, acc2 = 0, acc3 = 0;
  const int32_t* list = a.slots + int64_t{bh} * a.blocks_per_list;
  const int first = split * a.blocks_per_split;
  const int last = min(first + a.blocks_per_split, a.blocks_per_list);
  const auto* pool = static_cast<const __nv_bfloat16*>(a.pool);
  for (int i = first; i < last; ++i) {
    const __nv_bfloat16* block = pool + int64_t{list[i]} * 2 * 16 * kDim;
    for (int t = 0; t < 16; ++t) {
      const uint2 kr = *reinterpret_cast<const uint2*>(block + t * kDim + lane * 4);
      const uint2 vr = *reinterpret_cast<const uint2*>(block + (16 + t) * kDim + lane * 4);
      const float2 k01 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&kr.x));
      const float2 k23 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&kr.y));
      float s = q0 * k01.x + q1 * k01.y + q2 * k23.x + q3 * k23.y;
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
      const float mn = fmaxf(m, s), corr = __expf(m - mn), p = __expf(s - mn);
      const float2 v01 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&vr.x));
      const float2 v23 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&vr.y));
      l = l * corr + p;
      acc0 = acc0 * corr + p * v01.x;
      acc1 = acc1 * corr + p * v01.y;
      acc2 = acc2 * corr + p * v23.x;
      acc3 = acc3 * corr + p * v23.y;
      m = mn;
    }
  }
  float* part = a.partial + ((int64_t{b} * q_heads + qh) * splits + split) * (kDim + 2);
  part[lane * 4 + 0] = acc0;
  part[lane * 4 + 1] = acc1;
  part[lane * 4 + 2] = acc2;
  part[lane * 4 + 3] = acc3;
  if (lane == 0) {
    part[kDim] = m;
    part[kDim + 1] = l;
  }
}

// grid batch * q_heads, block kDim: thread d combines dimension d over the splits.
__global__ void AttentionCombineKernel(const float* partial, int splits, float* out) {
  const int row = blockIdx.x, d = threadIdx.x;
  const float* p = partial + int64_t{row} * splits * (kDim + 2);
  float mx = -INFINITY;
  for (int s = 0; s < splits; ++s) mx = fmaxf(mx, p[s * (kDim + 2) + kDim]);
  float num = 0, den = 0;
  for (int s = 0; s < splits; ++s) {
    const float* ps = p + s * (kDim + 2);
    if (ps[kDim + 1] == 0) continue;  // an empty split
    const float w = __expf(ps[kDim] - mx);
    num += w * ps[d];
    den += w * ps[kDim + 1];
  }
  out[int64_t{row} * kDim + d] = num / den;
}

}  // namespace

cudaError_t LaunchWeightStream(const void* weights, int64_t bytes, uint32_t* sink,
                               cudaStream_t stream) {
  WeightStreamKernel<<<132 * 8, 256, 0, stream>>>(static_cast<const uint4*>(weights), bytes / 16,
                                                  sink);
  return cudaGetLastError();
}

int64_t AttentionScratchFloats(const AttentionArgs& a) {
  const int64_t splits = (a.blocks_per_list + a.blocks_per_split - 1) / a.blocks_per_split;
  return int64_t{a.batch} * a.kv_heads * a.group * splits * (kDim + 2);
}

cudaError_t LaunchSparseAttention(const AttentionArgs& a, cudaStream_t stream) {
  if (a.head_dim != kDim || a.group < 1 || a.group > 32 || a.blocks_per_split < 1) {
    return cudaErrorInvalidValue;
  }
  const int splits = (a.blocks_per_list + a.blocks_per_split - 1) / a.blocks_per_split;
  AttentionPartialKernel<<<dim3(a.batch * a.kv_heads, splits), 32 * a.group, 0, stream>>>(a);
  AttentionCombineKernel<<<a.batch * a.kv_heads * a.group, kDim, 0, stream>>>(a.partial, splits,
                                                                              a.out);
  return cudaGetLastError();
}

}  // namespace apr::bench
