#include "backends/cuda/block_rules.h"
#include "backends/cuda/device_utils.cuh"
#include "backends/cuda/prefill_attention.h"
#include "backends/cuda/prefill_attention_mma.h"

namespace apr::cuda {
namespace {

constexpr int kRows = 32;      // query rows per CTA
constexpr int kThreads = 128;  // 4 threads per row

// Stages the block's K and V (bf16 -> float, tokens from valid on zeroed) in sk and sv.
template <int HD>
__device__ __forceinline__ void StageBlock(float (&sk)[kBlockTokens][HD + 4],
                                           float (&sv)[kBlockTokens][HD], const bf16* base,
                                           int valid, int tid) {
  for (int idx = tid; idx < kBlockTokens * HD / 8; idx += kThreads) {
    const int t = idx / (HD / 8), c = idx % (HD / 8);
    float kf[8], vf[8];
    if (t < valid) {
      Bf16x8ToFloat(*reinterpret_cast<const uint4*>(base + t * HD + c * 8), kf);
      Bf16x8ToFloat(*reinterpret_cast<const uint4*>(base + (kBlockTokens + t) * HD + c * 8), vf);
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) kf[e] = vf[e] = 0.f;
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      sk[t][c * 8 + e] = kf[e];
      sv[t][c * 8 + e] = vf[e];
    }
  }
}

// Thread (r, j)'s logits s[i] of keys j + 4 * i of the staged block (q already scaled).
template <int HD>
__device__ __forceinline__ void ScoreBlock(const float (&sq)[kRows][HD + 4],
                                           const float (&sk)[kBlockTokens][HD + 4], int r, int j,
                                           float (&s)[4]) {
#pragma unroll
  for (int i = 0; i < 4; ++i) s[i] = 0.f;
#pragma unroll 4
  for (int d = 0; d < HD; d += 4) {
    const float4 qv = *reinterpret_cast<const float4*>(&sq[r][d]);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float4 kv = *reinterpret_cast<const float4*>(&sk[j + 4 * i][d]);
      s[i] += qv.x * kv.x + qv.y * kv.y + qv.z * kv.z + qv.w * kv.w;
    }
  }
}

// Thread (r, j) = (tid / 4, tid % 4) owns query row r; it scores keys j, j + 4, j + 8,
// j + 12 of each 16-token block and accumulates output dims j, j + 4, j + 8, ...
template <int HD>
__global__ void __launch_bounds__(kThreads) PrefillKernel(const PrefillAttentionArgs a) {
  constexpr int kPad = HD + 4;
  __shared__ __align__(16) float sq[kRows][kPad];
  __shared__ __align__(16) float sk[kBlockTokens][kPad];
  __shared__ float sv[kBlockTokens][HD];
  __shared__ float sp[kRows][kBlockTokens + 1];

  const int h = blockIdx.y, g = h / (a.num_heads / a.num_kv_heads);
  const int q0 = blockIdx.x * kRows;
  const int tid = threadIdx.x, r = tid / 4, j = tid % 4;
  const int rows = min(kRows, a.n - q0);
  const float qscale = a.scale * kLog2e;
  for (int idx = tid; idx < kRows * HD; idx += kThreads) {
    const int rr = idx / HD, d = idx % HD;
    sq[rr][d] =
        rr < rows ? a.q[(static_cast<int64_t>(q0 + rr) * a.num_heads + h) * HD + d] * qscale : 0.f;
  }
  const int qpos = a.start + q0 + r;  // this thread's row position
  const int last_pos = a.start + q0 + rows - 1;
  const int nblocks = last_pos / kBlockTokens + 1;
  // The sliding window: blocks wholly before the first row's window are never read.
  const int first_block = a.window > 0 ? max(0, a.start + q0 - a.window + 1) / kBlockTokens : 0;

  float m = -INFINITY, l = 0.f, o[HD / 4];
#pragma unroll
  for (int i = 0; i < HD / 4; ++i) o[i] = 0.f;

  constexpr int64_t kSlotElems = 2 * kBlockTokens * HD;
  for (int kb = first_block; kb < nblocks; ++kb) {
    __syncthreads();  // the previous block's sk/sv/sp are consumed
    const bf16* base = a.pool + a.table.Slot(a.seq_slot, a.layer, g, kb) * kSlotElems;
    const int valid = min(kBlockTokens, last_pos + 1 - kb * kBlockTokens);
    StageBlock<HD>(sk, sv, base, valid, tid);
    __syncthreads();
    float s[4];
    ScoreBlock<HD>(sq, sk, r, j, s);
    float mx = -INFINITY;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int kpos = kb * kBlockTokens + j + 4 * i;
      const bool outside = kpos > qpos || (a.window > 0 && kpos <= qpos - a.window);
      if (outside || r >= rows) s[i] = -INFINITY;
      mx = fmaxf(mx, s[i]);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float mn = fmaxf(m, mx);
    const float alpha = mn == -INFINITY ? 1.f : exp2f(m - mn);
    m = mn;
    l *= alpha;
#pragma unroll
    for (int i = 0; i < HD / 4; ++i) o[i] *= alpha;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float p = mn == -INFINITY ? 0.f : exp2f(s[i] - mn);
      l += p;
      sp[r][j + 4 * i] = p;
    }
    __syncwarp();
#pragma unroll 4
    for (int t = 0; t < kBlockTokens; ++t) {
      const float p = sp[r][t];
#pragma unroll
      for (int i = 0; i < HD / 4; ++i) o[i] = fmaf(p, sv[t][4 * i + j], o[i]);
    }
  }
  l += __shfl_xor_sync(0xffffffffu, l, 1);
  l += __shfl_xor_sync(0xffffffffu, l, 2);
  if (r < rows) {
    const float inv = 1.f / l;
    bf16* out = a.out + static_cast<int64_t>(q0 + r) * a.num_heads * HD + h * HD;
#pragma unroll
    for (int i = 0; i < HD / 4; ++i) out[4 * i + j] = __float2bfloat16_rn(o[i] * inv);
  }
}

// One CTA per (query head, row): pass 1 finds the row's softmax max and sum over all keys
// up to its position, pass 2 the per-block maximum logits, turned into probabilities and
// max-pooled into the KV head's history row (probabilities are >= 0, so an integer
// atomicMax on their bits orders them).
__global__ void PrefillHistoryKernel(const PrefillHistoryArgs a) {
  extern __shared__ float sq[];  // [head_dim]
  __shared__ float scratch[32];
  const int h = blockIdx.x, r = blockIdx.y, hd = a.head_dim;
  const int g = h / (a.num_heads / a.num_kv_heads);
  const int pos = a.first_pos + r, nkeys = pos + 1;
  const float qscale = a.scale * kLog2e;
  for (int d = threadIdx.x; d < hd; d += blockDim.x)
    sq[d] = a.q[(static_cast<int64_t>(r) * a.num_heads + h) * hd + d] * qscale;
  __syncthreads();
  const int64_t slot_elems = 2 * kBlockTokens * hd;
  auto logit = [&](int t) {
    const bf16* k = a.pool + a.table.Slot(a.seq_slot, a.layer, g, t / kBlockTokens) * slot_elems +
                    (t % kBlockTokens) * hd;
    float dot = 0.f;
    for (int d = 0; d < hd; d += 8) {
      float kf[8];
      Bf16x8ToFloat(*reinterpret_cast<const uint4*>(k + d), kf);
#pragma unroll
      for (int e = 0; e < 8; ++e) dot = fmaf(sq[d + e], kf[e], dot);
    }
    return dot;
  };
  // Pass 1: max, then sum (two sweeps keep it simple; the keys are L2-resident).
  float mx = -INFINITY;
  for (int t = threadIdx.x; t < nkeys; t += blockDim.x) mx = fmaxf(mx, logit(t));
  mx = WarpMax(mx);
  __syncthreads();
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = mx;
  __syncthreads();
  mx = -INFINITY;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) mx = fmaxf(mx, scratch[w]);
  float sum = 0.f;
  for (int t = threadIdx.x; t < nkeys; t += blockDim.x) sum += exp2f(logit(t) - mx);
  sum = BlockSum(sum, scratch);
  const float inv = 1.f / sum;
  // Pass 2: a half-warp per block (threads are consecutive keys).
  float* hist =
      a.history +
      ((static_cast<int64_t>(a.seq_slot) * a.history_layers + a.layer) * a.num_kv_heads + g) *
          a.history_rows * a.history_cols +
      static_cast<int64_t>(kHistoryRows - a.rows + r) * a.history_cols;
  const int span = CeilDivInt(nkeys, blockDim.x) * blockDim.x;
  for (int t = threadIdx.x; t < span; t += blockDim.x) {
    float v = t < nkeys ? logit(t) : -INFINITY;
    v = XorMaxHalf(v);
    if (t % kBlockTokens == 0 && t < nkeys) {
      const float p = exp2f(v - mx) * inv;
      atomicMax(reinterpret_cast<int*>(hist + t / kBlockTokens), __float_as_int(p));
    }
  }
}

template <int HD>
cudaError_t LaunchPrefill(const PrefillAttentionArgs& a, cudaStream_t stream) {
  const dim3 grid(CeilDivInt(a.n, kRows), a.num_heads);
  PrefillKernel<HD><<<grid, kThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace

bool PrefillAttentionSupported(int head_dim) {
  return head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128;
}

cudaError_t LaunchPrefillAttention(const PrefillAttentionArgs& a, cudaStream_t stream) {
  if (a.n == 0) return cudaSuccess;
  // The tensor-core kernel assumes every row sees position 0 (a finite running max from
  // the first block on); a sliding window breaks that.
  if (!a.cuda_cores && a.window == 0 && PrefillAttentionMmaSupported(a.head_dim))
    return LaunchPrefillAttentionMma(a, stream);
  switch (a.head_dim) {
    case 16:
      return LaunchPrefill<16>(a, stream);
    case 32:
      return LaunchPrefill<32>(a, stream);
    case 64:
      return LaunchPrefill<64>(a, stream);
    case 128:
      return LaunchPrefill<128>(a, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

cudaError_t LaunchPrefillHistory(const PrefillHistoryArgs& a, cudaStream_t stream) {
  if (a.rows <= 0) return cudaSuccess;
  if (a.rows > kHistoryRows || a.history_rows < kHistoryRows || a.head_dim % 8 != 0)
    return cudaErrorInvalidValue;
  // Clear the layer's rows over the sequence's blocks (all KV heads: contiguous images).
  const int nb = NumBlocks(a.first_pos + a.rows);
  float* base = a.history + (static_cast<int64_t>(a.seq_slot) * a.history_layers + a.layer) *
                                a.num_kv_heads * a.history_rows * a.history_cols;
  if (cudaError_t e = cudaMemset2DAsync(base, a.history_cols * sizeof(float), 0, nb * sizeof(float),
                                        a.num_kv_heads * a.history_rows, stream);
      e != cudaSuccess)
    return e;
  if (!a.cuda_cores && PrefillAttentionMmaSupported(a.head_dim))
    return LaunchPrefillHistoryMma(a, stream);
  PrefillHistoryKernel<<<dim3(a.num_heads, a.rows), 256, a.head_dim * sizeof(float), stream>>>(a);
  return cudaGetLastError();
}

}  // namespace apr::cuda
