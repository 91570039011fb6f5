#include "backends/cuda/block_rules.h"
#include "backends/cuda/device_utils.cuh"
#include "backends/cuda/paged_decode_attention.h"

namespace apr::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kMaxCombineSplits = 256;

// Reduces v over the lanes whose ids differ only in bits [lo, hi) (xor butterfly).
template <int kLo, int kHi>
__device__ __forceinline__ float XorSum(float v) {
#pragma unroll
  for (int o = kLo; o < kHi; o *= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <int kLo, int kHi>
__device__ __forceinline__ float XorMax(float v) {
#pragma unroll
  for (int o = kLo; o < kHi; o *= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// The lane's 8 dims (c * 8 ..) of the G query heads of KV head g, scaled by qscale.
template <int HD, int G>
__device__ __forceinline__ void LoadQ(const PagedDecodeArgs& a, int b, int g, int c, int nh,
                                      float qscale, float (&q)[G][8]) {
#pragma unroll
  for (int gi = 0; gi < G; ++gi) {
    const float* qp = a.q + (static_cast<int64_t>(b) * nh + g * G + gi) * HD + c * 8;
    const float4 lo = *reinterpret_cast<const float4*>(qp);
    const float4 hi = *reinterpret_cast<const float4*>(qp + 4);
    q[gi][0] = lo.x * qscale;
    q[gi][1] = lo.y * qscale;
    q[gi][2] = lo.z * qscale;
    q[gi][3] = lo.w * qscale;
    q[gi][4] = hi.x * qscale;
    q[gi][5] = hi.y * qscale;
    q[gi][6] = hi.z * qscale;
    q[gi][7] = hi.w * qscale;
  }
}

// Entry e of the CTA's blocks: its block number lb, pool slot and first key (dense: the
// table's blocks in order; otherwise the lists').
__device__ __forceinline__ void EntryBlock(const PagedDecodeArgs& a, bool dense, int e,
                                           int64_t table_row, int64_t list_row, int slot_add,
                                           int& lb, int64_t& slot, int& first) {
  if (dense) {
    lb = e;
    slot = static_cast<int64_t>(a.table.group_table[table_row + e]) * a.table.slots_per_group +
           slot_add;
  } else {
    lb = a.lists.blocks[list_row + e];
    slot = a.lists.slots[list_row + e];
    if (a.lists.starts != nullptr) first = a.lists.starts[list_row + e];
  }
}

// This lane's K (and V) chunks of its kTpl tokens of the block; tokens outside
// [first, valid) are zeros.
template <int HD>
__device__ __forceinline__ void LoadBlock(const bf16* base, int tg, int first, int valid,
                                          bool with_v, uint4 (&kr)[kBlockTokens * HD / 256],
                                          uint4 (&vr)[kBlockTokens * HD / 256]) {
  constexpr int kLpt = HD / 8, kTg = 32 / kLpt, kTpl = kBlockTokens / kTg;
#pragma unroll
  for (int i = 0; i < kTpl; ++i) {
    const int t = tg * kTpl + i;
    if (t >= first && t < valid) {
      kr[i] = LoadStreaming(base + t * HD);
      vr[i] = with_v ? LoadStreaming(base + (kBlockTokens + t) * HD) : make_uint4(0, 0, 0, 0);
    } else {
      kr[i] = make_uint4(0, 0, 0, 0);
      vr[i] = make_uint4(0, 0, 0, 0);
    }
  }
}

// The block's logits sc (tokens outside [first, valid) at -inf) and their maximum bm per
// query head, over the whole warp.
template <int HD, int G>
__device__ __forceinline__ void ScoreBlock(const float (&q)[G][8],
                                           const uint4 (&kr)[kBlockTokens * HD / 256], int tg,
                                           int first, int valid,
                                           float (&sc)[kBlockTokens * HD / 256][G],
                                           float (&bm)[G]) {
  constexpr int kLpt = HD / 8, kTg = 32 / kLpt, kTpl = kBlockTokens / kTg;
#pragma unroll
  for (int i = 0; i < kTpl; ++i) {
    float kf[8];
    Bf16x8ToFloat(kr[i], kf);
#pragma unroll
    for (int gi = 0; gi < G; ++gi) {
      float dot = 0.f;
#pragma unroll
      for (int d = 0; d < 8; ++d) dot = fmaf(q[gi][d], kf[d], dot);
      sc[i][gi] = XorSum<1, kLpt>(dot);
    }
  }
#pragma unroll
  for (int gi = 0; gi < G; ++gi) {
    float mx = -INFINITY;
#pragma unroll
    for (int i = 0; i < kTpl; ++i) {
      if (tg * kTpl + i >= valid || tg * kTpl + i < first) sc[i][gi] = -INFINITY;
      mx = fmaxf(mx, sc[i][gi]);
    }
    bm[gi] = XorMax<kLpt, 32>(mx);
  }
}

// Online softmax update: the state (m, l, o) is rescaled to the new maximum, then the
// block's probabilities are added to l and, with V, their weighted V rows to o.
template <int HD, int G>
__device__ __forceinline__ void AccumulateBlock(const float (&bm)[G],
                                                const float (&sc)[kBlockTokens * HD / 256][G],
                                                const uint4 (&vr)[kBlockTokens * HD / 256],
                                                bool with_v, float (&m)[G], float (&l)[G],
                                                float (&o)[G][8]) {
  constexpr int kLpt = HD / 8, kTg = 32 / kLpt, kTpl = kBlockTokens / kTg;
#pragma unroll
  for (int gi = 0; gi < G; ++gi) {
    const float mn = fmaxf(m[gi], bm[gi]);
    const float alpha = exp2f(m[gi] - mn);
    m[gi] = mn;
    l[gi] *= alpha;
#pragma unroll
    for (int d = 0; d < 8; ++d) o[gi][d] *= alpha;
  }
#pragma unroll
  for (int i = 0; i < kTpl; ++i) {
    float vf[8];
    Bf16x8ToFloat(vr[i], vf);
#pragma unroll
    for (int gi = 0; gi < G; ++gi) {
      const float p = exp2f(sc[i][gi] - m[gi]);
      l[gi] += p;
      if (with_v) {
#pragma unroll
        for (int d = 0; d < 8; ++d) o[gi][d] = fmaf(p, vf[d], o[gi][d]);
      }
    }
  }
}

// Merge the lane groups (they share m; l and o are partial over their tokens), then the
// warp's state goes to shared memory for the CTA's merge.
template <int HD, int G>
__device__ __forceinline__ void StoreWarpState(float (&s_m)[kWarps][G], float (&s_l)[kWarps][G],
                                               float (&s_o)[kWarps][G][HD], int warp, int lane,
                                               int c, int tg, const float (&m)[G], float (&l)[G],
                                               float (&o)[G][8]) {
  constexpr int kLpt = HD / 8;
#pragma unroll
  for (int gi = 0; gi < G; ++gi) {
    l[gi] = XorSum<kLpt, 32>(l[gi]);
#pragma unroll
    for (int d = 0; d < 8; ++d) o[gi][d] = XorSum<kLpt, 32>(o[gi][d]);
  }
  if (tg == 0) {
#pragma unroll
    for (int gi = 0; gi < G; ++gi) {
#pragma unroll
      for (int d = 0; d < 8; ++d) s_o[warp][gi][c * 8 + d] = o[gi][d];
      if (lane == 0) {
        s_m[warp][gi] = m[gi];
        s_l[warp][gi] = l[gi];
      }
    }
  }
}

// After the barrier: merges the warps' states and writes the split's partial output and
// its (max, sum) per query head.
template <int HD, int G>
__device__ __forceinline__ void WritePartial(const PagedDecodeArgs& a,
                                             const float (&s_m)[kWarps][G],
                                             const float (&s_l)[kWarps][G],
                                             const float (&s_o)[kWarps][G][HD], int b, int g,
                                             int nh, int split) {
  for (int idx = threadIdx.x; idx < G * HD; idx += kWarps * 32) {
    const int gi = idx / HD, d = idx % HD;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, s_m[w][gi]);
    float acc = 0.f, sum = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float f = s_m[w][gi] == -INFINITY ? 0.f : exp2f(s_m[w][gi] - mx);
      acc += f * s_o[w][gi][d];
      sum += f * s_l[w][gi];
    }
    const int64_t ph = (static_cast<int64_t>(b) * nh + g * G + gi) * a.splits + split;
    a.part_o[ph * HD + d] = acc;
    if (d == 0) {
      a.part_ml[ph * 2] = mx;
      a.part_ml[ph * 2 + 1] = sum;
    }
  }
}

// One CTA per (split, KV head, sequence); each warp takes whole 16-token blocks of the
// split's range in turn and keeps its own online-softmax state for the group's G query
// heads; the CTA merges its warps and writes one partial result per query head.
//
// Lanes in a warp: kLpt = HD / 8 lanes cover one token row with a 16-byte load each
// (8 dims: c = lane % kLpt); the kTg = 32 / kLpt lane groups take kTpl = 16 / kTg
// consecutive tokens of the block each. A block's K rows are thus read as kTg contiguous
// row segments per instruction, V likewise, and each lane does G * 8 multiply-adds per
// token for the scores and for the output.
template <int HD, int G>
__global__ void __launch_bounds__(kWarps * 32) DecodeKernel(const PagedDecodeArgs a) {
  constexpr int kLpt = HD / 8, kTg = 32 / kLpt, kTpl = kBlockTokens / kTg;
  static_assert(kTpl == kBlockTokens * HD / 256, "the helpers' token arrays");
  const int split = blockIdx.x, g = blockIdx.y, b = blockIdx.z;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int c = lane % kLpt, tg = lane / kLpt;
  const int nkv = a.num_kv_heads, nh = a.num_heads;
  const int row = b * nkv + g;
  const int len = a.context_lens[b];
  const int count = a.lists.counts != nullptr ? a.lists.counts[row] : -1;
  const bool dense = count < 0;
  const int n = dense ? NumBlocks(len) : count;
  const int per = SplitSize(n, a.splits);
  const int e0 = split * per, e1 = min(n, e0 + per);
  if (e0 >= e1) return;  // the whole CTA: no barrier is skipped by part of it
  const bool with_v = !a.history_only;

  __shared__ float s_m[kWarps][G], s_l[kWarps][G];
  __shared__ float s_o[kWarps][G][HD];
  if (split == 0 && a.history != nullptr) {
    // The combine max-pools into this row with atomics; clear it here, a kernel earlier.
    float* hrow = a.history +
                  ((static_cast<int64_t>(a.seq_slots[b]) * a.history_layers + a.layer) * nkv + g) *
                      a.history_rows * a.history_cols +
                  static_cast<int64_t>(a.history_row[b]) * a.history_cols;
    for (int j = threadIdx.x; j < NumBlocks(len); j += kWarps * 32) hrow[j] = 0.f;
  }

  float q[G][8];
  const float qscale = a.scale * kLog2e;  // logits in log2 units: exp2 below
  LoadQ<HD, G>(a, b, g, c, nh, qscale, q);

  float m[G], l[G], o[G][8];
#pragma unroll
  for (int gi = 0; gi < G; ++gi) {
    m[gi] = -INFINITY;
    l[gi] = 0.f;
#pragma unroll
    for (int d = 0; d < 8; ++d) o[gi][d] = 0.f;
  }

  const int64_t table_row = dense ? static_cast<int64_t>(a.seq_slots[b]) * a.table.table_stride : 0;
  const int64_t list_row = static_cast<int64_t>(row) * a.lists.stride;
  const int slot_add = a.layer * nkv + g;
  constexpr int64_t kSlotElems = 2 * kBlockTokens * HD;

  for (int e = e0 + warp; e < e1; e += kWarps) {
    int lb, first = 0;
    int64_t slot;
    EntryBlock(a, dense, e, table_row, list_row, slot_add, lb, slot, first);
    // The sliding window's first key, relative to this block.
    if (a.window > 0) first = max(first, len - a.window - lb * kBlockTokens);
    const int valid = min(kBlockTokens, len - lb * kBlockTokens);
    if (valid <= first) {
      // A block before the window: no probability (lists never hold empty blocks otherwise).
      if (a.window > 0 && a.block_max != nullptr && lane == 0) {
#pragma unroll
        for (int gi = 0; gi < G; ++gi)
          a.block_max[(static_cast<int64_t>(row) * a.score_stride + e) * G + gi] = -INFINITY;
      }
      continue;
    }
    const bf16* base = a.pool + slot * kSlotElems + c * 8;
    uint4 kr[kTpl], vr[kTpl];
    LoadBlock<HD>(base, tg, first, valid, with_v, kr, vr);
    float sc[kTpl][G];
    float bm[G];
    ScoreBlock<HD, G>(q, kr, tg, first, valid, sc, bm);
    if (a.block_max != nullptr && lane == 0) {
      float* out = a.block_max + (static_cast<int64_t>(row) * a.score_stride + e) * G;
#pragma unroll
      for (int gi = 0; gi < G; ++gi) out[gi] = bm[gi];
    }
    AccumulateBlock<HD, G>(bm, sc, vr, with_v, m, l, o);
  }

  StoreWarpState<HD, G>(s_m, s_l, s_o, warp, lane, c, tg, m, l, o);
  __syncthreads();
  WritePartial<HD, G>(a, s_m, s_l, s_o, b, g, nh, split);
}

// History row of batch entry b, KV head g (null when the history is not updated).
__device__ __forceinline__ float* HistoryRow(const PagedDecodeArgs& a, int b, int g) {
  if (a.history == nullptr) return nullptr;
  return a.history +
         ((static_cast<int64_t>(a.seq_slots[b]) * a.history_layers + a.layer) * a.num_kv_heads +
          g) *
             a.history_rows * a.history_cols +
         static_cast<int64_t>(a.history_row[b]) * a.history_cols;
}

constexpr int kCombineThreads = 512;

// One CTA per (query head, sequence): merges the head's splits (weights exp2(m_s - M)
// computed once, the partial outputs summed by several thread groups in parallel), writes
// the bf16 output, and turns the head's block maxima into probabilities, max-pooled into
// the history row with an integer atomicMax (probabilities are >= 0); the decode kernel
// cleared that row.
template <int G>
__global__ void __launch_bounds__(kCombineThreads) CombineKernel(const PagedDecodeArgs a) {
  PdlTrigger();  // o_proj may start loading its weights
  const int h = blockIdx.x, b = blockIdx.y, g = h / G, gi = h % G;
  const int nkv = a.num_kv_heads, nh = a.num_heads, hd = a.head_dim;
  const int row = b * nkv + g;
  const int len = a.context_lens[b];
  const int count = a.lists.counts != nullptr ? a.lists.counts[row] : -1;
  const bool dense = count < 0;
  const int n = dense ? NumBlocks(len) : count;
  const int used = UsedSplits(n, a.splits);
  __shared__ float s_w[kMaxCombineSplits];
  __shared__ float s_red[kCombineThreads];
  __shared__ float s_scratch[32];
  const int64_t ph = (static_cast<int64_t>(b) * nh + h) * a.splits;
  const int tid = threadIdx.x;
  float mx = -INFINITY;
  for (int s = tid; s < used; s += kCombineThreads) mx = fmaxf(mx, a.part_ml[(ph + s) * 2]);
  mx = WarpMax(mx);
  if (tid % 32 == 0) s_scratch[tid / 32] = mx;
  __syncthreads();
  mx = -INFINITY;
#pragma unroll
  for (int w = 0; w < kCombineThreads / 32; ++w) mx = fmaxf(mx, s_scratch[w]);
  float sum = 0.f;
  for (int s = tid; s < used; s += kCombineThreads) {
    const float f = exp2f(a.part_ml[(ph + s) * 2] - mx);
    s_w[s] = f;
    sum += f * a.part_ml[(ph + s) * 2 + 1];
  }
  sum = BlockSum(sum, s_scratch);  // its barriers also publish s_w
  const float inv = 1.f / sum;
  if (a.history_only) goto probabilities;
  if (a.out_ml != nullptr && tid == 0) {
    a.out_ml[(static_cast<int64_t>(b) * nh + h) * 2] = mx;
    a.out_ml[(static_cast<int64_t>(b) * nh + h) * 2 + 1] = sum;
  }
  {
    // Output: `parts` thread groups of hd threads each take every parts-th split.
    const int parts = kCombineThreads / hd;
    const int d = tid % hd, part = tid / hd;
    float acc = 0.f;
    if (part < parts) {
      const float* po = a.part_o + ph * hd + d;
      int s = part;
      for (; s + 7 * parts < used; s += 8 * parts) {
        float v[8];
#pragma unroll
        for (int u = 0; u < 8; ++u) v[u] = po[int64_t{s + u * parts} * hd];
#pragma unroll
        for (int u = 0; u < 8; ++u) acc += v[u] * s_w[s + u * parts];
      }
      for (; s < used; s += parts) acc += po[int64_t{s} * hd] * s_w[s];
    }
    s_red[tid] = acc;
    __syncthreads();
    if (tid < hd) {
      float t = 0.f;
      for (int p = 0; p < parts; ++p) t += s_red[p * hd + tid];
      a.out[static_cast<int64_t>(b) * nh * hd + h * hd + tid] = __float2bfloat16_rn(t * inv);
    }
  }
probabilities:
  if (a.block_max == nullptr) return;
  float* hrow = HistoryRow(a, b, g);
  const int64_t list_row = static_cast<int64_t>(row) * a.lists.stride;
  for (int e = tid; e < n; e += kCombineThreads) {
    const int64_t idx = (static_cast<int64_t>(row) * a.score_stride + e) * G + gi;
    const float p = exp2f(a.block_max[idx] - mx) * inv;
    if (a.block_probs != nullptr) a.block_probs[idx] = p;
    if (hrow != nullptr)
      atomicMax(reinterpret_cast<int*>(hrow + (dense ? e : a.lists.blocks[list_row + e])),
                __float_as_int(p));
  }
}

template <int HD, int G>
cudaError_t Launch(const PagedDecodeArgs& a, cudaStream_t stream) {
  const dim3 grid(a.splits, a.num_kv_heads, a.batch);
  DecodeKernel<HD, G><<<grid, kWarps * 32, 0, stream>>>(a);
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  CombineKernel<G><<<dim3(a.num_heads, a.batch), kCombineThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

template <int HD>
cudaError_t DispatchGroup(const PagedDecodeArgs& a, int group, cudaStream_t stream) {
  switch (group) {
    case 1:
      return Launch<HD, 1>(a, stream);
    case 2:
      return Launch<HD, 2>(a, stream);
    case 3:
      return Launch<HD, 3>(a, stream);
    case 4:
      return Launch<HD, 4>(a, stream);
    case 8:
      if constexpr (HD <= 64) return Launch<HD, 8>(a, stream);
      return cudaErrorInvalidValue;
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace

bool PagedDecodeSupported(int head_dim, int group) {
  const bool hd_ok = head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128;
  const bool g_ok = (group >= 1 && group <= 4) || (group == 8 && head_dim <= 64);
  return hd_ok && g_ok;
}

cudaError_t LaunchPagedDecodeAttention(const PagedDecodeArgs& a, cudaStream_t stream) {
  if (a.batch == 0) return cudaSuccess;
  const int group = a.num_heads / a.num_kv_heads;
  if (!PagedDecodeSupported(a.head_dim, group) || a.splits < 1 || a.splits > kMaxCombineSplits)
    return cudaErrorInvalidValue;
  if (a.history != nullptr && a.block_max == nullptr) return cudaErrorInvalidValue;
  if (a.history_only && a.history == nullptr) return cudaErrorInvalidValue;
  switch (a.head_dim) {
    case 16:
      return DispatchGroup<16>(a, group, stream);
    case 32:
      return DispatchGroup<32>(a, group, stream);
    case 64:
      return DispatchGroup<64>(a, group, stream);
    case 128:
      return DispatchGroup<128>(a, group, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace apr::cuda
