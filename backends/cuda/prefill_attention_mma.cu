// Prefill attention on the tensor cores (head dims 64 and 128), flash-attention-2 style:
// a CTA takes 64 query rows of one head, a warp 16 of them; per 16-token KV block of the
// pool, S = Q K^T and O += P V are mma.m16n8k16 (bf16 operands, float32 accumulation) with
// an online softmax in registers between them. P goes from S's accumulators to the PV
// mma's A operand without shared memory (the m16n8 C layout of two n-tiles is the m16k16
// A layout). The next block's K and V are copied with cp.async while the current one is
// computed. Same contract as the CUDA-core kernel (prefill_attention.h).
//
// The history's initial rows (the last <= 64 prompt rows' attention, max-pooled per block)
// are two more kernels over the same K tiles: the keys are split over CTAs, the first
// kernel finds each split's softmax max and sum per row, the second combines them and
// writes each block's largest probability. Their S keeps float32 accuracy (the history
// is compared with the CPU's at 1e-3): Q is split into two bf16 halves, hi + lo, and
// both are multiplied, which is cheap next to the 64-row CUDA-core kernel it replaces.
#include <algorithm>

#include "backends/cuda/block_rules.h"
#include "backends/cuda/device_utils.cuh"
#include "backends/cuda/prefill_attention.h"
#include "backends/cuda/prefill_attention_mma.h"

namespace apr::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kRowsPerCta = 16 * kWarps;

template <int HD>
struct Tile {
  // A row of K or V, padded by 16 bytes so that the 8 rows an ldmatrix or a fragment load
  // touches fall in distinct banks.
  static constexpr int kStride = HD + 8;
  __nv_bfloat16 k[kBlockTokens][kStride];
  __nv_bfloat16 v[kBlockTokens][kStride];
};

// Copies block kb's K (and V) rows into t with cp.async; Args: the attention's or the
// history's arguments (pool, table, seq_slot, layer).
template <int HD, bool kWithV = true, typename Args>
__device__ __forceinline__ void StartBlock(const Args& a, int g, int kb, int valid, Tile<HD>& t) {
  const __nv_bfloat16* base =
      a.pool + a.table.Slot(a.seq_slot, a.layer, g, kb) * (2 * kBlockTokens * HD);
  constexpr int kChunks = kBlockTokens * HD / 8;  // 16-byte chunks of K (and of V)
  for (int i = threadIdx.x; i < (kWithV ? 2 : 1) * kChunks; i += kWarps * 32) {
    const int kv = i / kChunks, row = i % kChunks / (HD / 8), c = i % (HD / 8);
    // Tokens past the prompt are zeros: a 0 probability times garbage could be NaN.
    const bool in = row < valid;
    __nv_bfloat16* dst = (kv == 0 ? t.k : t.v)[row] + c * 8;
    CpAsync16(dst, in ? base + (kv * kBlockTokens + row) * HD + c * 8 : base, in ? 16 : 0);
  }
  CpAsyncCommit();
}

// Causal mask of this lane's S elements for block kb (row at pos0: elements 0, 1 of each n
// tile; pos1: 2, 3), then each row's maximum over the block and the values mx0 / mx1 come
// in with, reduced over the quad of lanes that holds the row.
__device__ __forceinline__ void MaskAndRowMax(float (&s)[2][4], int kb, int ft, int pos0, int pos1,
                                              float& mx0, float& mx1) {
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int tok = kb * kBlockTokens + nt * 8 + 2 * ft + e;
      if (tok > pos0) s[nt][e] = -INFINITY;
      if (tok > pos1) s[nt][2 + e] = -INFINITY;
      mx0 = fmaxf(mx0, s[nt][e]);
      mx1 = fmaxf(mx1, s[nt][2 + e]);
    }
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
}

// This lane's query rows r0 and r1 (clamped to the prompt), scaled for exp2, as the A
// fragments of S = Q K^T.
template <int HD>
__device__ __forceinline__ void LoadQ(const PrefillAttentionArgs& a, int h, int r0, int r1, int ft,
                                      float qscale, uint32_t (&qf)[HD / 16][4]) {
  constexpr int kSteps = HD / 16;
  const float* q_row0 = a.q + (static_cast<int64_t>(min(r0, a.n - 1)) * a.num_heads + h) * HD;
  const float* q_row1 = a.q + (static_cast<int64_t>(min(r1, a.n - 1)) * a.num_heads + h) * HD;
#pragma unroll
  for (int s = 0; s < kSteps; ++s) {
    const int d = s * 16 + 2 * ft;
    const float2 a0 = *reinterpret_cast<const float2*>(q_row0 + d);
    const float2 a1 = *reinterpret_cast<const float2*>(q_row1 + d);
    const float2 a2 = *reinterpret_cast<const float2*>(q_row0 + d + 8);
    const float2 a3 = *reinterpret_cast<const float2*>(q_row1 + d + 8);
    qf[s][0] = PackBf16x2(a0.x * qscale, a0.y * qscale);
    qf[s][1] = PackBf16x2(a1.x * qscale, a1.y * qscale);
    qf[s][2] = PackBf16x2(a2.x * qscale, a2.y * qscale);
    qf[s][3] = PackBf16x2(a3.x * qscale, a3.y * qscale);
  }
}

// S = Q K^T for the block's 16 tokens: n tiles of tokens 0..7 and 8..15.
template <int HD>
__device__ __forceinline__ void BlockLogits(const uint32_t (&qf)[HD / 16][4], const Tile<HD>& t,
                                            int fg, int ft, float (&s)[2][4]) {
  constexpr int kSteps = HD / 16;
#pragma unroll
  for (int nt = 0; nt < 2; ++nt) {
    const __nv_bfloat16* krow = t.k[nt * 8 + fg];
#pragma unroll
    for (int st = 0; st < kSteps; ++st) {
      const uint32_t b0 = *reinterpret_cast<const uint32_t*>(krow + st * 16 + 2 * ft);
      const uint32_t b1 = *reinterpret_cast<const uint32_t*>(krow + st * 16 + 2 * ft + 8);
      Mma16816(s[nt], qf[st], b0, b1);
    }
  }
}

// O = alpha O + P V; V's B fragments by ldmatrix.trans, two n tiles per x4.
template <int HD>
__device__ __forceinline__ void AccumulatePV(const Tile<HD>& t, int lane, const uint32_t (&pa)[4],
                                             float alpha0, float alpha1, float (&o)[HD / 8][4]) {
  constexpr int kOut = HD / 8;
  const int vrow = (lane / 8 % 2) * 8 + lane % 8, vcol = (lane / 16) * 8;
#pragma unroll
  for (int j = 0; j < kOut; j += 2) {
    uint32_t vb[4];
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(vb[0]), "=r"(vb[1]), "=r"(vb[2]), "=r"(vb[3])
                 : "r"(static_cast<uint32_t>(__cvta_generic_to_shared(&t.v[vrow][j * 8 + vcol]))));
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      o[j][e] *= alpha0;
      o[j][2 + e] *= alpha1;
      o[j + 1][e] *= alpha0;
      o[j + 1][2 + e] *= alpha1;
    }
    Mma16816(o[j], pa, vb[0], vb[1]);
    Mma16816(o[j + 1], pa, vb[2], vb[3]);
  }
}

// Sums l over the quad and writes rows r0 and r1 of O / l (those inside the prompt).
template <int HD>
__device__ __forceinline__ void StoreO(const PrefillAttentionArgs& a, int h, int r0, int r1, int ft,
                                       const float (&o)[HD / 8][4], float l0, float l1) {
  constexpr int kOut = HD / 8;
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const float inv0 = 1.f / l0, inv1 = 1.f / l1;
#pragma unroll
  for (int j = 0; j < kOut; ++j) {
    const int d = j * 8 + 2 * ft;
    if (r0 < a.n)
      *reinterpret_cast<uint32_t*>(a.out + static_cast<int64_t>(r0) * a.num_heads * HD + h * HD +
                                   d) = PackBf16x2(o[j][0] * inv0, o[j][1] * inv0);
    if (r1 < a.n)
      *reinterpret_cast<uint32_t*>(a.out + static_cast<int64_t>(r1) * a.num_heads * HD + h * HD +
                                   d) = PackBf16x2(o[j][2] * inv1, o[j][3] * inv1);
  }
}

template <int HD>
__global__ void __launch_bounds__(kWarps * 32, 2) PrefillMmaKernel(const PrefillAttentionArgs a) {
  __shared__ __align__(128) Tile<HD> tiles[2];
  constexpr int kSteps = HD / 16;  // k steps of S = Q K^T
  constexpr int kOut = HD / 8;     // n tiles of O
  const int h = blockIdx.y, g = h / (a.num_heads / a.num_kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, fg = lane / 4, ft = lane % 4;
  const int q0 = blockIdx.x * kRowsPerCta;
  const int last_pos = a.start + min(a.n, q0 + kRowsPerCta) - 1;
  const int nblocks = last_pos / kBlockTokens + 1;
  StartBlock<HD>(a, g, 0, min(kBlockTokens, last_pos + 1), tiles[0]);

  // This lane's query rows (warp rows fg and fg + 8), scaled for exp2, as A fragments.
  const int r0 = q0 + warp * 16 + fg, r1 = r0 + 8;
  const int pos0 = a.start + r0, pos1 = a.start + r1;
  const float qscale = a.scale * kLog2e;
  uint32_t qf[kSteps][4];
  LoadQ<HD>(a, h, r0, r1, ft, qscale, qf);
  float o[kOut][4];
#pragma unroll
  for (int j = 0; j < kOut; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[j][e] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;

  for (int kb = 0; kb < nblocks; ++kb) {
    Tile<HD>& t = tiles[kb % 2];
    if (kb + 1 < nblocks) {
      // The other buffer was last read in block kb - 1, which every warp has finished.
      StartBlock<HD>(a, g, kb + 1, min(kBlockTokens, last_pos + 1 - (kb + 1) * kBlockTokens),
                     tiles[(kb + 1) % 2]);
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();

    float s[2][4] = {};
    BlockLogits<HD>(qf, t, fg, ft, s);
    // Causal mask, then the online softmax of rows r0 and r1.
    float mx0 = m0, mx1 = m1;
    MaskAndRowMax(s, kb, ft, pos0, pos1, mx0, mx1);
    // Block 0 holds position 0, which every row attends: the maxima are finite from it on.
    const float alpha0 = exp2f(m0 - mx0), alpha1 = exp2f(m1 - mx1);
    m0 = mx0;
    m1 = mx1;
    float p[2][4];
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        p[nt][e] = exp2f(s[nt][e] - m0);
        p[nt][2 + e] = exp2f(s[nt][2 + e] - m1);
      }
    l0 = l0 * alpha0 + p[0][0] + p[0][1] + p[1][0] + p[1][1];
    l1 = l1 * alpha1 + p[0][2] + p[0][3] + p[1][2] + p[1][3];
    // P as the A operand (rows fg / fg + 8, tokens 2ft.. and 2ft + 8..).
    const uint32_t pa[4] = {PackBf16x2(p[0][0], p[0][1]), PackBf16x2(p[0][2], p[0][3]),
                            PackBf16x2(p[1][0], p[1][1]), PackBf16x2(p[1][2], p[1][3])};
    AccumulatePV<HD>(t, lane, pa, alpha0, alpha1, o);
    __syncthreads();  // this buffer is refilled two blocks on
  }

  StoreO<HD>(a, h, r0, r1, ft, o, l0, l1);
}

template <int HD>
cudaError_t Launch(const PrefillAttentionArgs& a, cudaStream_t stream) {
  const dim3 grid((a.n + kRowsPerCta - 1) / kRowsPerCta, a.num_heads);
  PrefillMmaKernel<HD><<<grid, kWarps * 32, 0, stream>>>(a);
  return cudaGetLastError();
}

// ---------------------------------------------------------------- history rows

constexpr int kHistoryTargetCtas = 512;  // splits = this / heads: about 4 CTAs per SM
constexpr int kHistoryMaxSplits = 64;

// x as hi + lo, both bf16: hi * k + lo * k is x * k to about 2^-16 relative.
__device__ __forceinline__ void SplitBf16x2(float x, float y, uint32_t& hi, uint32_t& lo) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
  hi = *reinterpret_cast<const uint32_t*>(&h);
  lo = PackBf16x2(x - __low2float(h), y - __high2float(h));
}

// This warp's S = Q K^T over one block's 16 tokens (rows fg and fg + 8 of the warp's 16).
template <int HD>
__device__ __forceinline__ void HistoryLogits(const uint32_t (&qh)[HD / 16][4],
                                              const uint32_t (&ql)[HD / 16][4], const Tile<HD>& t,
                                              int fg, int ft, float (&s)[2][4]) {
#pragma unroll
  for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) s[nt][e] = 0.f;
    const __nv_bfloat16* krow = t.k[nt * 8 + fg];
#pragma unroll
    for (int st = 0; st < HD / 16; ++st) {
      const uint32_t b0 = *reinterpret_cast<const uint32_t*>(krow + st * 16 + 2 * ft);
      const uint32_t b1 = *reinterpret_cast<const uint32_t*>(krow + st * 16 + 2 * ft + 8);
      Mma16816(s[nt], qh[st], b0, b1);
      Mma16816(s[nt], ql[st], b0, b1);
    }
  }
}

// This lane's query rows r0 and r1 (clamped to a.rows), scaled for exp2, as the A
// fragments of S = Q K^T, each split into a bf16 hi and lo half.
template <int HD>
__device__ __forceinline__ void LoadSplitQ(const PrefillHistoryArgs& a, int h, int r0, int r1,
                                           int ft, float qscale, uint32_t (&qh)[HD / 16][4],
                                           uint32_t (&ql)[HD / 16][4]) {
  const float* q_row0 = a.q + (static_cast<int64_t>(min(r0, a.rows - 1)) * a.num_heads + h) * HD;
  const float* q_row1 = a.q + (static_cast<int64_t>(min(r1, a.rows - 1)) * a.num_heads + h) * HD;
#pragma unroll
  for (int st = 0; st < HD / 16; ++st) {
    const int d = st * 16 + 2 * ft;
    const float2 a0 = *reinterpret_cast<const float2*>(q_row0 + d);
    const float2 a1 = *reinterpret_cast<const float2*>(q_row1 + d);
    const float2 a2 = *reinterpret_cast<const float2*>(q_row0 + d + 8);
    const float2 a3 = *reinterpret_cast<const float2*>(q_row1 + d + 8);
    SplitBf16x2(a0.x * qscale, a0.y * qscale, qh[st][0], ql[st][0]);
    SplitBf16x2(a1.x * qscale, a1.y * qscale, qh[st][1], ql[st][1]);
    SplitBf16x2(a2.x * qscale, a2.y * qscale, qh[st][2], ql[st][2]);
    SplitBf16x2(a3.x * qscale, a3.y * qscale, qh[st][3], ql[st][3]);
  }
}

// kPool: rows r0 and r1's max (m) and inverse sum (l) over all keys from every split's
// stats, and their history rows (hist0 / hist1; left null for lanes that do not write).
__device__ __forceinline__ void CombineSplits(const PrefillHistoryArgs& a, const float* stats,
                                              int splits, int g, int r0, int r1, int ft, float& m0,
                                              float& m1, float& l0, float& l1, float*& hist0,
                                              float*& hist1) {
  for (int sp = 0; sp < splits; ++sp) {
    m0 = fmaxf(m0, stats[(sp * kHistoryRows + r0) * 2]);
    m1 = fmaxf(m1, stats[(sp * kHistoryRows + r1) * 2]);
  }
  for (int sp = 0; sp < splits; ++sp) {
    const float2 s0 = *reinterpret_cast<const float2*>(stats + (sp * kHistoryRows + r0) * 2);
    const float2 s1 = *reinterpret_cast<const float2*>(stats + (sp * kHistoryRows + r1) * 2);
    if (s0.x != -INFINITY) l0 += s0.y * exp2f(s0.x - m0);
    if (s1.x != -INFINITY) l1 += s1.y * exp2f(s1.x - m1);
  }
  l0 = 1.f / l0;  // from here on the inverse sums
  l1 = 1.f / l1;
  float* image =
      a.history +
      ((static_cast<int64_t>(a.seq_slot) * a.history_layers + a.layer) * a.num_kv_heads + g) *
          a.history_rows * a.history_cols;
  if (ft == 0 && r0 < a.rows)
    hist0 = image + static_cast<int64_t>(kHistoryRows - a.rows + r0) * a.history_cols;
  if (ft == 0 && r1 < a.rows)
    hist1 = image + static_cast<int64_t>(kHistoryRows - a.rows + r1) * a.history_cols;
}

// One CTA per (key split, query head): 64 rows (4 warps x 16), rows past a.rows computed
// and never written. kPool false: each row's softmax max and sum over the split's keys
// into the scratch; true: the row's probabilities from every split's max and sum, each
// block's largest max-pooled into the KV head's history row (atomicMax on the bits of
// non-negative floats orders them).
template <int HD, bool kPool>
__global__ void __launch_bounds__(kWarps * 32)
    PrefillHistoryMmaKernel(const PrefillHistoryArgs a, int per_split) {
  __shared__ __align__(128) Tile<HD> tiles[2];  // V rows unused
  const int split = blockIdx.x, splits = gridDim.x, h = blockIdx.y;
  const int g = h / (a.num_heads / a.num_kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, fg = lane / 4, ft = lane % 4;
  const int last_tok = a.first_pos + a.rows - 1;
  const int kb0 = split * per_split, kb1 = min(kb0 + per_split, last_tok / kBlockTokens + 1);
  if (kb0 < kb1)
    StartBlock<HD, false>(a, g, kb0, min(kBlockTokens, last_tok + 1 - kb0 * kBlockTokens),
                          tiles[0]);

  const int r0 = warp * 16 + fg, r1 = r0 + 8;
  const int pos0 = a.first_pos + r0, pos1 = a.first_pos + r1;
  const float qscale = a.scale * kLog2e;
  uint32_t qh[HD / 16][4], ql[HD / 16][4];
  LoadSplitQ<HD>(a, h, r0, r1, ft, qscale, qh, ql);
  float* stats = a.scratch + (static_cast<int64_t>(h) * kHistoryMaxSplits * kHistoryRows) * 2;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  float* hist0 = nullptr;
  float* hist1 = nullptr;
  if constexpr (kPool) {
    // The rows' max and sum over all keys, from every split's.
    CombineSplits(a, stats, splits, g, r0, r1, ft, m0, m1, l0, l1, hist0, hist1);
  }

  for (int kb = kb0; kb < kb1; ++kb) {
    Tile<HD>& t = tiles[(kb - kb0) % 2];
    if (kb + 1 < kb1) {
      StartBlock<HD, false>(a, g, kb + 1, min(kBlockTokens, last_tok + 1 - (kb + 1) * kBlockTokens),
                            tiles[(kb - kb0 + 1) % 2]);
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();
    float s[2][4];
    HistoryLogits<HD>(qh, ql, t, fg, ft, s);
    float bm0 = -INFINITY, bm1 = -INFINITY;
    MaskAndRowMax(s, kb, ft, pos0, pos1, bm0, bm1);
    if constexpr (kPool) {
      if (hist0 != nullptr && bm0 != -INFINITY)
        atomicMax(reinterpret_cast<int*>(hist0 + kb), __float_as_int(exp2f(bm0 - m0) * l0));
      if (hist1 != nullptr && bm1 != -INFINITY)
        atomicMax(reinterpret_cast<int*>(hist1 + kb), __float_as_int(exp2f(bm1 - m1) * l1));
    } else {
      // Online max and sum; a row with no key yet in this split keeps -inf and 0.
      const float n0 = fmaxf(m0, bm0), n1 = fmaxf(m1, bm1);
      const float b0 = n0 == -INFINITY ? 0.f : n0, b1 = n1 == -INFINITY ? 0.f : n1;
      l0 = l0 * exp2f(m0 - b0) + exp2f(s[0][0] - b0) + exp2f(s[0][1] - b0) + exp2f(s[1][0] - b0) +
           exp2f(s[1][1] - b0);
      l1 = l1 * exp2f(m1 - b1) + exp2f(s[0][2] - b1) + exp2f(s[0][3] - b1) + exp2f(s[1][2] - b1) +
           exp2f(s[1][3] - b1);
      m0 = n0;
      m1 = n1;
    }
    __syncthreads();  // this buffer is refilled two blocks on
  }
  if constexpr (!kPool) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    if (ft == 0) {
      *reinterpret_cast<float2*>(stats + (split * kHistoryRows + r0) * 2) = make_float2(m0, l0);
      *reinterpret_cast<float2*>(stats + (split * kHistoryRows + r1) * 2) = make_float2(m1, l1);
    }
  }
}

template <int HD>
cudaError_t LaunchHistory(const PrefillHistoryArgs& a, cudaStream_t stream) {
  const int nblocks = NumBlocks(a.first_pos + a.rows);
  int splits = std::min({std::max(kHistoryTargetCtas / a.num_heads, 1), kHistoryMaxSplits, nblocks,
                         a.max_splits > 0 ? a.max_splits : kHistoryMaxSplits});
  const int per = CeilDivInt(nblocks, splits);
  splits = CeilDivInt(nblocks, per);  // no empty split
  const dim3 grid(splits, a.num_heads);
  PrefillHistoryMmaKernel<HD, false><<<grid, kWarps * 32, 0, stream>>>(a, per);
  PrefillHistoryMmaKernel<HD, true><<<grid, kWarps * 32, 0, stream>>>(a, per);
  return cudaGetLastError();
}

}  // namespace

int64_t PrefillHistoryScratchFloats(int num_heads) {
  return int64_t{num_heads} * kHistoryMaxSplits * kHistoryRows * 2;
}

cudaError_t LaunchPrefillHistoryMma(const PrefillHistoryArgs& a, cudaStream_t stream) {
  if (a.rows <= 0) return cudaSuccess;
  if (a.scratch == nullptr || a.rows > kHistoryRows) return cudaErrorInvalidValue;
  switch (a.head_dim) {
    case 64:
      return LaunchHistory<64>(a, stream);
    case 128:
      return LaunchHistory<128>(a, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

bool PrefillAttentionMmaSupported(int head_dim) { return head_dim == 64 || head_dim == 128; }

cudaError_t LaunchPrefillAttentionMma(const PrefillAttentionArgs& a, cudaStream_t stream) {
  if (a.n <= 0) return cudaSuccess;
  switch (a.head_dim) {
    case 64:
      return Launch<64>(a, stream);
    case 128:
      return Launch<128>(a, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace apr::cuda
