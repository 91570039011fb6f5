#include <algorithm>

#include "backends/cuda/block_rules.h"
#include "backends/cuda/device_utils.cuh"
#include "backends/cuda/predictor/hybrid_select.h"
#include "backends/cuda/offload_kernels.h"

namespace apr::cuda {
namespace {

constexpr int kThreads = 256;
static_assert(kQuerySelectMaxBlocks <= kThreads, "PlaceUncached: a thread per query block");
constexpr int kMaxGroupDims = 8 * 128;  // query heads per KV head x head_dim (CheckModel)

// Larger float -> larger key; -0 as +0; NaN as -inf. 0 is below every float's key: the
// CNN's blocks get it, so they are never taken again.
__device__ __forceinline__ uint32_t OrderKey(float f) {
  if (f != f) f = -INFINITY;
  f += 0.0f;
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// The CPU's GroupQuestBound (predictor/policy.cc): std::max is (a < b) ? b : a, products
// and sums rounded one at a time (no FMA), channels in order.
__device__ float GroupBound(const float* q, int group, int hd, const bf16* mn, const bf16* mx) {
  float best = -INFINITY;
  for (int h = 0; h < group; ++h) {
    float s = 0.0f;
    for (int d = 0; d < hd; ++d) {
      const float a = __fmul_rn(q[h * hd + d], __bfloat162float(mn[d]));
      const float c = __fmul_rn(q[h * hd + d], __bfloat162float(mx[d]));
      s = __fadd_rn(s, a < c ? c : a);
    }
    best = best < s ? s : best;
  }
  return best;
}

// The k largest of keys[0, n) (k < n), ties to the lower index, written ascending as
// blocks kSinkBlocks + i to `out`. Radix select of the k-th key, then an ordered
// compaction (TopkKernel's method).
__device__ void SelectAscending(const uint32_t* keys, int n, int k, int32_t* out) {
  __shared__ int hist[256];
  __shared__ int scratch[32];
  __shared__ uint32_t s_prefix;
  __shared__ int s_remaining;
  if (threadIdx.x == 0) s_prefix = 0, s_remaining = k;
  uint32_t mask = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    hist[threadIdx.x] = 0;
    __syncthreads();
    const uint32_t prefix = s_prefix;
    const int remaining = s_remaining;
    for (int i = threadIdx.x; i < n; i += kThreads)
      if ((keys[i] & mask) == prefix) atomicAdd(&hist[(keys[i] >> shift) & 255u], 1);
    __syncthreads();
    const int digit = 255 - static_cast<int>(threadIdx.x);
    const int count = hist[digit];
    int total;
    const int above = BlockExclusiveScan<kThreads>(count, scratch, &total);
    if (above < remaining && above + count >= remaining) {
      s_prefix = prefix | (static_cast<uint32_t>(digit) << shift);
      s_remaining = remaining - above;
    }
    mask |= 255u << shift;
    __syncthreads();
  }
  const uint32_t threshold = s_prefix;
  const int take_equal = s_remaining;
  const int per = CeilDivInt(n, kThreads);
  const int lo = min(n, static_cast<int>(threadIdx.x) * per), hi = min(n, lo + per);
  int eq = 0, total;
  for (int i = lo; i < hi; ++i) eq += keys[i] == threshold;
  const int eq_before = BlockExclusiveScan<kThreads>(eq, scratch, &total);
  int kept = 0;
  for (int i = lo, e = eq_before; i < hi; ++i)
    if (keys[i] > threshold || (keys[i] == threshold && e++ < take_equal)) ++kept;
  int at = BlockExclusiveScan<kThreads>(kept, scratch, &total);
  for (int i = lo, e = eq_before; i < hi; ++i)
    if (keys[i] > threshold || (keys[i] == threshold && e++ < take_equal))
      out[at++] = kSinkBlocks + i;
  __syncthreads();
}

// Offloaded: chosen blocks the cache does not hold get this image's query slots and a
// fetch from the tier.
__device__ void PlaceUncached(const QuerySelectArgs& a, int b, int g, int row, int count) {
  const int j = threadIdx.x;
  if (j >= count) return;
  const int seq = a.seq_slots[b], nkv = a.num_kv_heads;
  const int blk = a.blocks[static_cast<int64_t>(row) * a.stride + j];
  const int64_t img = (static_cast<int64_t>(seq) * a.cache.layers + a.layer) * nkv + g;
  int32_t* slot = a.slots + static_cast<int64_t>(row) * a.stride + j;
  if (a.cache.where[img * a.cache.max_blocks + blk] >= 0) {
    *slot = -1;
    return;
  }
  const int64_t dst = a.query_slot_base + img * a.stride + j;
  *slot = static_cast<int32_t>(dst);
  const uint32_t src =
      a.tier[(static_cast<int64_t>(seq) * a.cache.max_blocks + blk) * a.cache.layers * nkv +
             a.layer * nkv + g];
  const int at = atomicAdd(a.fetch_count, 1);
  if (at >= a.max_fetch || src == kNoTierSlot) {
    atomicExch(a.error, 1);
    return;
  }
  a.fetch_src[at] = src;
  a.fetch_dst[at] = static_cast<uint32_t>(dst);
  atomicAdd(a.counters + kCounterFetched, 1ull);
}

__global__ void __launch_bounds__(kThreads) QuerySelectKernel(const QuerySelectArgs a) {
  extern __shared__ uint32_t keys[];
  __shared__ float qs[kMaxGroupDims];
  const int g = blockIdx.x, b = blockIdx.y, nkv = a.num_kv_heads, hd = a.head_dim;
  const int row = b * nkv + g, group = a.num_heads / nkv;
  const int len = a.context_lens[b], seq = a.seq_slots[b];
  const int n = NumCandidates(len), k = a.k_blocks;
  // n <= k: every candidate fits, the CNN's part took them all.
  if (n <= k || (!a.sel_checked && a.sel.lens[seq] != len)) {
    if (threadIdx.x == 0) {
      a.counts[row] = 0;
      if (n > k) atomicExch(a.error, 1);
    }
    return;
  }
  const int count = min(HybridQueryBlocks(k), k);
  const float* q = a.q + (static_cast<int64_t>(b) * a.num_heads + g * group) * hd;
  for (int i = threadIdx.x; i < group * hd; i += kThreads) qs[i] = q[i];
  __syncthreads();
  const bf16* sum =
      a.summary +
      ((static_cast<int64_t>(seq) * a.summary_layers + a.layer) * nkv + g) * a.max_blocks * 2 * hd;
  for (int i = threadIdx.x; i < n; i += kThreads) {
    const bf16* s = sum + static_cast<int64_t>(kSinkBlocks + i) * 2 * hd;
    keys[i] = OrderKey(GroupBound(qs, group, hd, s, s + hd));
  }
  __syncthreads();
  const int64_t sel_img =
      (static_cast<int64_t>(seq) * a.sel.num_layers + a.sel_layer) * a.sel.kv_heads + g;
  const int nsel = a.sel.counts[sel_img];
  for (int j = threadIdx.x; j < nsel; j += kThreads)
    keys[a.sel.blocks[sel_img * a.sel.stride + j] - kSinkBlocks] = 0;
  __syncthreads();
  SelectAscending(keys, n, count, a.blocks + static_cast<int64_t>(row) * a.stride);
  if (threadIdx.x == 0) a.counts[row] = count;
  if (a.cache.where != nullptr) PlaceUncached(a, b, g, row, count);
}

}  // namespace

cudaError_t LaunchQuerySelect(const QuerySelectArgs& a, cudaStream_t stream) {
  if (a.batch == 0) return cudaSuccess;
  const int group = a.num_heads / a.num_kv_heads;
  if (group * a.head_dim > kMaxGroupDims || a.stride < HybridQueryBlocks(a.k_blocks) ||
      a.stride > kQuerySelectMaxBlocks)
    return cudaErrorInvalidValue;
  const size_t keys_bytes = sizeof(uint32_t) * static_cast<size_t>(kTopkMaxCandidates);
  QuerySelectKernel<<<dim3(a.num_kv_heads, a.batch), kThreads, keys_bytes, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace apr::cuda
