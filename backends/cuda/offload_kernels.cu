#include <climits>

#include "backends/cuda/block_rules.h"
#include "backends/cuda/device_utils.cuh"
#include "backends/cuda/offload_kernels.h"

namespace apr::cuda {
namespace {

constexpr int kPlanThreads = 256;

// Entry i of the wanted list of a step of context `len`, ascending and distinct:
// sink [0, sb), the selected blocks below lo = max(FirstLocalBlock, sb), local [lo, nb).
struct Wanted {
  int sb, lo, nb, nsel_lo;
  const int32_t* sel;
  __device__ int size() const { return sb + nsel_lo + (nb - lo); }
  __device__ int at(int i, bool* predicted) const {
    *predicted = false;
    if (i < sb) return i;
    i -= sb;
    if (i < nsel_lo) {
      *predicted = true;
      return sel[i];
    }
    return lo + (i - nsel_lo);
  }
};

// Per-CTA context of CachePlanKernel: the CTA's (sequence, layer, KV head) cache image, the
// layer's fetch and write-back lists and the CTA's shared memory. Its methods are the
// kernel's phases (every thread of the CTA calls each; the barriers stay where they were).
struct PlanCta {
  const CachePlanArgs& a;
  unsigned char* const keep;  // shared [slots]
  int* const scan_scratch;    // shared [kPlanThreads / 32]
  int& s_base;
  int& s_err;
  int& s_fetched;
  const int g, b, tid;
  // blockIdx.z: the layer within the launch's group; each layer has its own lists.
  const int z, layer;
  uint32_t* const fetch_src;
  uint32_t* const fetch_dst;
  int32_t* const fetch_count;
  uint32_t* const wb_src;
  uint32_t* const wb_dst;
  int32_t* const wb_count;
  const int nkv, C;
  const int len;
  const int seq;
  Wanted w;
  int total;
  int full;
  int64_t img, tier_stride;
  int32_t* where;
  int32_t* tags;
  const uint32_t* tier_row;
  int32_t* missing;
  int32_t* stamp;

  __device__ __forceinline__ PlanCta(const CachePlanArgs& args, unsigned char* keep_,
                                     int* scan_scratch_, int& s_base_, int& s_err_, int& s_fetched_)
      : a(args),
        keep(keep_),
        scan_scratch(scan_scratch_),
        s_base(s_base_),
        s_err(s_err_),
        s_fetched(s_fetched_),
        g(blockIdx.x),
        b(blockIdx.y),
        tid(threadIdx.x),
        z(blockIdx.z),
        layer(a.layer + z),
        fetch_src(a.fetch_src + static_cast<int64_t>(z) * a.max_fetch),
        fetch_dst(a.fetch_dst + static_cast<int64_t>(z) * a.max_fetch),
        fetch_count(a.fetch_count + z),
        wb_src(a.wb_src == nullptr ? nullptr : a.wb_src + z * a.max_wb),
        wb_dst(a.wb_dst == nullptr ? nullptr : a.wb_dst + z * a.max_wb),
        wb_count(a.wb_count == nullptr ? nullptr : a.wb_count + z),
        nkv(a.cache.kv_heads),
        C(a.cache.slots),
        len(a.next_lens[b]),
        seq(a.seq_slots[b]) {}

  // The image's rows and the wanted list (after the selection was checked for len).
  __device__ __forceinline__ void Locate() {
    img = (static_cast<int64_t>(seq) * a.cache.layers + layer) * nkv + g;
    where = a.cache.where + img * a.cache.max_blocks;
    tags = a.cache.tags + img * C;
    const int64_t sel_img =
        (static_cast<int64_t>(seq) * a.sel.num_layers + layer - a.sel_first_layer) *
            a.sel.kv_heads +
        g;
    const int nsel = a.sel.counts[sel_img];
    w.sel = a.sel.blocks + sel_img * a.sel.stride;
    w.nb = NumBlocks(len);
    w.sb = SinkBlocks(len);
    w.lo = max(FirstLocalBlock(len), w.sb);
    // Selected blocks below the local window (the selection is ascending; at most its last
    // entry reaches the window's first block).
    int n_lo = nsel;
    while (n_lo > 0 && w.sel[n_lo - 1] >= w.lo) --n_lo;
    w.nsel_lo = n_lo;
    total = w.size();
    full = (len - 1) / kBlockTokens;  // complete blocks before the step's token
    tier_stride = static_cast<int64_t>(a.cache.layers) * nkv;
    tier_row =
        a.tier + static_cast<int64_t>(seq) * a.cache.max_blocks * tier_stride + layer * nkv + g;
    missing = a.scratch + ((static_cast<int64_t>(z) * gridDim.y + b) * nkv + g) * C;
    stamp = a.cache.stamps + img * C;
  }

  // Puts missing[j] into slot c (evicting its block, if any) and, when it is complete,
  // lists its fetch.
  __device__ __forceinline__ void Place(int j, int c) const {
    const int blk = missing[j];
    const int old = tags[c];
    if (old >= 0) where[old] = -1;  // old is not wanted, blk is: no other thread writes these
    where[blk] = c;
    tags[c] = blk;
    if (blk < full) {
      const int at = atomicAdd(fetch_count, 1);
      const uint32_t src = tier_row[static_cast<int64_t>(blk) * tier_stride];
      if (at >= a.max_fetch || src == kNoTierSlot) {
        s_err = 1;
      } else {
        fetch_src[at] = src;
        fetch_dst[at] = static_cast<uint32_t>(img * C + c);
      }
      atomicAdd(&s_fetched, 1);
    } else if (!(blk == full && (len - 1) % kBlockTokens == 0)) {
      s_err = 1;  // a block that should have stayed cached is missing
    }
  }

  // Pass 1: cached wanted blocks are kept (hits); with reuse off, cached predicted blocks
  // are fetched again into their slot; missing blocks are listed in order.
  __device__ __forceinline__ void KeepCached(int& hits, int& n_missing, int& n_fetch) const {
    for (int base = 0; base < total; base += kPlanThreads) {
      const int i = base + tid;
      bool predicted = false;
      int blk = -1, c = -1;
      if (i < total) {
        blk = w.at(i, &predicted);
        c = where[blk];
        if (c >= 0) {
          keep[c] = 1;
          stamp[c] = len;
          if (predicted && a.reuse) ++hits;
        }
      }
      const bool miss = i < total && c < 0;
      const bool refetch = i < total && c >= 0 && predicted && !a.reuse;
      int t_miss, t_re;
      const int o_miss = BlockExclusiveScan<kPlanThreads>(miss ? 1 : 0, scan_scratch, &t_miss);
      if (miss) missing[n_missing + o_miss] = blk;
      n_missing += t_miss;
      const int o_re = BlockExclusiveScan<kPlanThreads>(refetch ? 1 : 0, scan_scratch, &t_re);
      if (t_re > 0) {
        if (tid == 0) s_base = atomicAdd(fetch_count, t_re);
        __syncthreads();
        if (refetch) {
          const int at = s_base + o_re;
          const uint32_t src = tier_row[static_cast<int64_t>(blk) * tier_stride];
          if (at >= a.max_fetch || src == kNoTierSlot || blk >= full) {
            s_err = 1;
          } else {
            fetch_src[at] = src;
            fetch_dst[at] = static_cast<uint32_t>(img * C + c);
          }
        }
        n_fetch += t_re;
        __syncthreads();  // s_base is reused
      }
    }
  }

  // Pass 2, free slots: the n_missing blocks (ascending) take free slots first, in slot
  // order; returns how many were placed.
  __device__ __forceinline__ int AssignFreeSlots(int n_missing) const {
    int assigned = 0;
    for (int base = 0; base < C && assigned < n_missing; base += kPlanThreads) {
      const int c = base + tid;
      const bool free_slot = c < C && keep[c] == 0 && tags[c] < 0;
      int t_free;
      const int o_free = BlockExclusiveScan<kPlanThreads>(free_slot ? 1 : 0, scan_scratch, &t_free);
      const int j = assigned + o_free;
      const bool take = free_slot && j < n_missing;
      if (take) {
        keep[c] = 1;  // not evictable below
        Place(j, c);
      }
      assigned += min(t_free, n_missing - assigned);
    }
    return assigned;
  }

  // Pass 2, eviction: the rest take the slots of blocks that are not wanted, least recently
  // wanted first (stamp, then slot). Sink, local window and tail are wanted, so never
  // evicted.
  __device__ __forceinline__ void EvictLeastRecent(int assigned, int n_missing) const {
    const int need = n_missing - assigned;
    for (int c = tid; c < C; c += kPlanThreads) {
      if (keep[c] != 0) continue;  // wanted, or just filled (every remaining slot has a block)
      const int sc = stamp[c];
      int rank = 0;
      for (int o = 0; o < C; ++o) {
        if (keep[o] == 0) {
          const int so = stamp[o];
          rank += so < sc || (so == sc && o < c);
        }
      }
      if (rank < need) Place(assigned + rank, c);
    }
  }

  // Stamps of the newly placed blocks (the kept ones were stamped in pass 1).
  __device__ __forceinline__ void StampPlaced(int n_missing) const {
    for (int j = tid; j < n_missing; j += kPlanThreads) {
      const int c = where[missing[j]];
      if (c >= 0) {
        stamp[c] = len;
      } else {
        s_err = 1;  // no slot was left for it
      }
    }
  }

  // Write-back of the block this step filled (it is in the next step's local window, so it
  // stays cached; its slot is final after pass 2); returns 1 if it was listed.
  __device__ __forceinline__ int WriteBack() const {
    int wrote = 0;
    if (tid == 0 && a.wb_slots != nullptr && len > 1 && (len - 1) % kBlockTokens == 0) {
      const int fb = (len - 2) / kBlockTokens;
      const int c = where[fb];
      const uint32_t dst = a.wb_slots[(static_cast<int64_t>(b) * a.cache.layers + layer) * nkv + g];
      if (c < 0 || dst == kNoTierSlot) {
        s_err = 1;
      } else {
        const int at = atomicAdd(wb_count, 1);
        wb_src[at] = static_cast<uint32_t>(img * C + c);
        wb_dst[at] = dst;
        if (a.record_tier) {
          a.tier[(static_cast<int64_t>(seq) * a.cache.max_blocks + fb) * tier_stride + layer * nkv +
                 g] = dst;
        }
        wrote = 1;
      }
    }
    return wrote;
  }

  // Counters: the CTA's hits (each thread counted its own).
  __device__ __forceinline__ void Count(int hits, int n_fetch, int wrote) const {
    int t_hits;
    BlockExclusiveScan<kPlanThreads>(hits, scan_scratch, &t_hits);
    if (tid == 0) {
      atomicAdd(a.counters + kCounterHits, static_cast<unsigned long long>(t_hits));
      atomicAdd(a.counters + kCounterPredicted, static_cast<unsigned long long>(w.nsel_lo));
      atomicAdd(a.counters + kCounterFetched, static_cast<unsigned long long>(n_fetch + s_fetched));
      atomicAdd(a.counters + kCounterWrittenBack, static_cast<unsigned long long>(wrote));
      atomicAdd(a.counters + kCounterPlans, 1ull);
      if (s_err) atomicExch(a.error, 1);
    }
  }
};

__global__ void __launch_bounds__(kPlanThreads) CachePlanKernel(const CachePlanArgs a) {
  extern __shared__ unsigned char keep[];  // [slots]
  __shared__ int scan_scratch[kPlanThreads / 32];
  __shared__ int s_base;
  __shared__ int s_err;
  __shared__ int s_fetched;
  PlanCta p(a, keep, scan_scratch, s_base, s_err, s_fetched);
  if (p.b == 0 && p.g == 0 && p.tid == 0) a.issued[p.layer] += 1;
  if (p.tid == 0) {
    s_err = 0;
    s_fetched = 0;
  }
  if (a.sel.lens[p.seq] != p.len) {
    if (p.tid == 0) atomicExch(a.error, 1);
    return;  // the whole CTA
  }
  p.Locate();

  for (int c = p.tid; c < p.C; c += kPlanThreads) keep[c] = 0;
  __syncthreads();

  int hits = 0, n_missing = 0, n_fetch = 0;
  p.KeepCached(hits, n_missing, n_fetch);
  __syncthreads();  // keep[] and missing[] complete

  const int assigned = p.AssignFreeSlots(n_missing);
  __syncthreads();
  if (assigned < n_missing) p.EvictLeastRecent(assigned, n_missing);
  __syncthreads();
  p.StampPlaced(n_missing);

  __syncthreads();
  const int wrote = p.WriteBack();
  p.Count(hits, n_fetch, wrote);
}

__global__ void MarkFetchedKernel(int32_t* done, int layer) {
  volatile int32_t* d = done;
  d[layer] = d[layer] + 1;
}

__global__ void StallProbeKernel(const int32_t* issued, const int32_t* done, int first, int count,
                                 unsigned long long* counters) {
  const volatile int32_t* d = done;
  unsigned long long stalls = 0;
  for (int l = first; l < first + count; ++l) {
    if (d[l] < issued[l]) ++stalls;
  }
  counters[kCounterWaits] += static_cast<unsigned long long>(count);
  counters[kCounterStalls] += stalls;
}

__global__ void SpinKernel(long long nanoseconds) {
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (static_cast<long long>(t - t0) < nanoseconds);
}

// One CTA per (block, layer * kv_heads + g); thread d reduces channel d.
__global__ void KeySummaryKernel(const KeySummaryArgs a) {
  const int blk = a.first_block + blockIdx.x;
  const int lg = blockIdx.y, layer = lg / a.kv_heads, g = lg % a.kv_heads;
  const int hd = a.head_dim;
  const bf16* k = a.pool + a.table.Slot(a.seq_slot, layer, g, blk) * 2 * kBlockTokens * hd;
  bf16* out =
      a.summary +
      (((static_cast<int64_t>(a.seq_slot) * a.layers + layer) * a.kv_heads + g) * a.max_blocks +
       blk) *
          2 * hd;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float mn = INFINITY, mx = -INFINITY;
#pragma unroll
    for (int t = 0; t < kBlockTokens; ++t) {
      const float v = __bfloat162float(k[t * hd + d]);
      mn = fminf(mn, v);
      mx = fmaxf(mx, v);
    }
    out[d] = __float2bfloat16_rn(mn);  // exact: min and max of bf16 values are bf16 values
    out[hd + d] = __float2bfloat16_rn(mx);
  }
}

// One warp per block j of the row; kWarps warps per CTA; grid (blocks / kWarps, batch * kv).
constexpr int kCalWarps = 8;
constexpr int kCalMaxGroup = 8;
constexpr int kCalMaxHeadDim = 256;

__global__ void __launch_bounds__(kCalWarps * 32)
    SummaryCalibrationKernel(const SummaryCalibrationArgs a) {
  const int row = blockIdx.y, b = row / a.num_kv_heads, g = row % a.num_kv_heads;
  if (a.dense[b] == 0) return;
  const int G = a.num_heads / a.num_kv_heads, hd = a.head_dim;
  const int len = a.context_lens[b];
  const int nb = NumBlocks(len);
  __shared__ float s_q[kCalMaxGroup * kCalMaxHeadDim];
  __shared__ float s_m[kCalMaxGroup], s_inv[kCalMaxGroup];
  const float qscale = a.scale * kLog2e;
  for (int i = threadIdx.x; i < G * hd; i += blockDim.x) {
    s_q[i] = a.q[(static_cast<int64_t>(b) * a.num_heads + g * G) * hd + i] * qscale;
  }
  if (threadIdx.x < G) {
    const float* ml = a.ml + (static_cast<int64_t>(b) * a.num_heads + g * G + threadIdx.x) * 2;
    s_m[threadIdx.x] = ml[0];
    s_inv[threadIdx.x] = ml[1] > 0.f ? 1.f / ml[1] : 0.f;
  }
  __syncthreads();
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int j = blockIdx.x * kCalWarps + warp;
  if (j >= nb) return;
  // Listed blocks keep the attention's exact value (the list is ascending).
  const int count = a.lists.counts[row];
  const int32_t* listed = a.lists.blocks + static_cast<int64_t>(row) * a.lists.stride;
  int lo = 0, hi = count;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (listed[mid] < j) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo < count && listed[lo] == j) return;
  const bf16* s =
      a.summary +
      (((static_cast<int64_t>(a.seq_slots[b]) * a.summary_layers + a.layer) * a.num_kv_heads + g) *
           a.max_blocks +
       j) *
          2 * hd;
  float dot[kCalMaxGroup], rad[kCalMaxGroup];
#pragma unroll
  for (int gi = 0; gi < kCalMaxGroup; ++gi) dot[gi] = rad[gi] = 0.f;
  const bool quest = a.estimate == SummaryEstimate::kQuestBound;
  for (int d = lane; d < hd; d += 32) {
    const float mn = __bfloat162float(s[d]), mx = __bfloat162float(s[hd + d]);
    const float c = 0.5f * (mn + mx), r = 0.5f * (mx - mn);
#pragma unroll
    for (int gi = 0; gi < kCalMaxGroup; ++gi) {
      if (gi < G) {
        const float qv = s_q[gi * hd + d];
        dot[gi] = fmaf(qv, c, dot[gi]);
        rad[gi] = quest ? fmaf(fabsf(qv), r, rad[gi]) : fmaf(qv * r, qv * r, rad[gi]);
      }
    }
  }
  float p = 0.f;
#pragma unroll
  for (int gi = 0; gi < kCalMaxGroup; ++gi) {
    if (gi < G) {
      const float dsum = WarpSum(dot[gi]), rsum = WarpSum(rad[gi]);
      const float u = dsum + (quest ? rsum : sqrtf(rsum));
      p = fmaxf(p, fminf(1.f, exp2f(u - s_m[gi]) * s_inv[gi]));
    }
  }
  if (lane == 0) {
    float* hrow =
        a.history +
        ((static_cast<int64_t>(a.seq_slots[b]) * a.history_layers + a.layer) * a.num_kv_heads + g) *
            a.history_rows * a.history_cols +
        static_cast<int64_t>(a.history_row[b]) * a.history_cols;
    hrow[j] = p;
  }
}

// One CTA per (block i, image of the sequence).
__global__ void SeedCacheKernel(const SeedCacheArgs a) {
  const int i = blockIdx.x, lg = blockIdx.y;
  const int layer = lg / a.cache.kv_heads, g = lg % a.cache.kv_heads;
  const int64_t img =
      (static_cast<int64_t>(a.seq_slot) * a.cache.layers + layer) * a.cache.kv_heads + g;
  const int blk = a.blocks[i];
  if (threadIdx.x == 0) {
    a.cache.tags[img * a.cache.slots + i] = blk;
    a.cache.where[img * a.cache.max_blocks + blk] = i;
  }
  if (a.src_pool == nullptr) return;
  const int64_t vecs = 2 * kBlockTokens * a.head_dim / 8;  // uint4 per block
  const uint4* from = reinterpret_cast<const uint4*>(a.src_pool) +
                      a.src_table.Slot(a.seq_slot, layer, g, blk) * vecs;
  uint4* to = reinterpret_cast<uint4*>(a.pool) + (img * a.cache.slots + i) * vecs;
  for (int64_t v = threadIdx.x; v < vecs; v += blockDim.x) to[v] = from[v];
}

}  // namespace

cudaError_t LaunchCachePlan(const CachePlanArgs& a, cudaStream_t stream) {
  if (a.batch == 0) return cudaSuccess;
  if (a.cache.slots <= 0 || a.cache.slots > 46 * 1024 || a.scratch == nullptr ||
      a.fetch_count == nullptr || a.counters == nullptr || a.issued == nullptr ||
      a.error == nullptr || (a.wb_slots != nullptr && a.wb_count == nullptr))
    return cudaErrorInvalidValue;
  if (a.layer_count < 1 || a.layer + a.layer_count > a.cache.layers ||
      (a.layer_count > 1 && a.wb_slots != nullptr && a.max_wb <= 0))
    return cudaErrorInvalidValue;
  CachePlanKernel<<<dim3(a.cache.kv_heads, a.batch, a.layer_count), kPlanThreads, a.cache.slots,
                    stream>>>(a);
  return cudaGetLastError();
}

cudaError_t LaunchMarkFetched(int32_t* done, int layer, cudaStream_t stream) {
  MarkFetchedKernel<<<1, 1, 0, stream>>>(done, layer);
  return cudaGetLastError();
}

cudaError_t LaunchStallProbe(const int32_t* issued, const int32_t* done, int first, int count,
                             unsigned long long* counters, cudaStream_t stream) {
  if (count <= 0) return cudaSuccess;
  StallProbeKernel<<<1, 1, 0, stream>>>(issued, done, first, count, counters);
  return cudaGetLastError();
}

cudaError_t LaunchSpin(int microseconds, cudaStream_t stream) {
  if (microseconds <= 0) return cudaSuccess;
  SpinKernel<<<1, 1, 0, stream>>>(static_cast<long long>(microseconds) * 1000);
  return cudaGetLastError();
}

cudaError_t LaunchKeySummary(const KeySummaryArgs& a, cudaStream_t stream) {
  if (a.num_blocks <= 0) return cudaSuccess;
  if (a.head_dim <= 0 || a.head_dim > 1024) return cudaErrorInvalidValue;
  KeySummaryKernel<<<dim3(a.num_blocks, a.layers * a.kv_heads), a.head_dim, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t LaunchSummaryCalibration(const SummaryCalibrationArgs& a, cudaStream_t stream) {
  if (a.batch == 0 || a.max_cols <= 0) return cudaSuccess;
  const int G = a.num_heads / a.num_kv_heads;
  if (G > kCalMaxGroup || a.head_dim > kCalMaxHeadDim || a.lists.counts == nullptr ||
      a.ml == nullptr || a.dense == nullptr)
    return cudaErrorInvalidValue;
  const dim3 grid(CeilDivInt(a.max_cols, kCalWarps), a.batch * a.num_kv_heads);
  SummaryCalibrationKernel<<<grid, kCalWarps * 32, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t LaunchSeedCache(const SeedCacheArgs& a, cudaStream_t stream) {
  if (a.n <= 0) return cudaSuccess;
  SeedCacheKernel<<<dim3(a.n, a.cache.layers * a.cache.kv_heads), 128, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace apr::cuda
