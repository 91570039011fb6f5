#include <algorithm>
#include <climits>

#include "backends/cuda/block_rules.h"
#include "backends/cuda/device_utils.cuh"
#include "backends/cuda/predictor/topk_select.h"

namespace apr::cuda {
namespace {

constexpr int kThreads = 256;

// Monotone map of floats to unsigned ints (larger float -> larger key); -0 maps like +0,
// NaN like -inf (docs/PREDICTOR.md TopK).
__device__ __forceinline__ uint32_t OrderKey(float f) {
  if (f != f) f = -INFINITY;  // NaN ranks with -inf, below every number
  f += 0.0f;                  // -0 -> +0
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Ordered compaction: thread t owns indices [t * per, (t + 1) * per). Writes the kept
// candidates (keys above the threshold, then the first take_equal equal to it) to sel in
// index order and returns how many (every thread of the CTA calls it: it holds barriers).
__device__ __forceinline__ int CompactSelected(const uint32_t* keys, int n, uint32_t threshold,
                                               int take_equal, int* scratch, int32_t* sel) {
  const int per = CeilDivInt(n, kThreads);
  const int lo = min(n, threadIdx.x * per), hi = min(n, lo + per);
  int eq = 0;
  for (int i = lo; i < hi; ++i) eq += keys[i] == threshold;
  int total;
  int eq_before = BlockExclusiveScan<kThreads>(eq, scratch, &total);
  int kept = 0;
  for (int i = lo, e = eq_before; i < hi; ++i) {
    const uint32_t key = keys[i];
    if (key > threshold || (key == threshold && e++ < take_equal)) ++kept;
  }
  int out = BlockExclusiveScan<kThreads>(kept, scratch, &total);
  for (int i = lo, e = eq_before; i < hi; ++i) {
    const uint32_t key = keys[i];
    if (key > threshold || (key == threshold && e++ < take_equal)) sel[out++] = kSinkBlocks + i;
  }
  return total;
}

// One CTA per (layer, KV head, sequence): radix-select the k-th largest key (4 passes of 8
// bits), then keep every key above it and the lowest-indexed keys equal to it. The keys
// live in dynamic shared memory sized for the launch's score columns.
static_assert(kThreads == 256, "a thread per radix digit");
__global__ void __launch_bounds__(kThreads) TopkKernel(const TopkArgs a) {
  extern __shared__ uint32_t keys[];
  __shared__ int hist[256];
  __shared__ int scratch[32];
  __shared__ uint32_t s_prefix;
  __shared__ int s_remaining;

  const int b = blockIdx.y, g = blockIdx.x % a.num_kv_heads;
  const int li = a.layer_begin + blockIdx.x / a.num_kv_heads;
  const int len = a.next_lens[b];
  const int n = NumCandidates(len);
  const int k = a.k_blocks;
  const int64_t img =
      (static_cast<int64_t>(a.seq_slots[b]) * a.out.num_layers + li) * a.out.kv_heads + g;
  int32_t* sel = a.out.blocks + img * a.out.stride;
  if (blockIdx.x == 0 && threadIdx.x == 0) a.out.lens[a.seq_slots[b]] = len;
  // predictor-hybrid leaves part of the budget to the query when the candidates do not fit.
  const int k_cnn = a.query_blocks > 0 && n > k ? HybridCnnBlocks(k) : k;
  if (!NeedsPrediction(len, k) || k_cnn == 0) {
    // All candidates fit, or fewer than 3 remain (no CNN: equal scores, the lowest win).
    const int kept = min(KeptCandidates(len, k), k_cnn);
    for (int i = threadIdx.x; i < kept; i += kThreads) sel[i] = kSinkBlocks + i;
    if (threadIdx.x == 0) a.out.counts[img] = kept;
    return;
  }
  if (n > kTopkMaxCandidates || n > a.score_cols) {
    if (threadIdx.x == 0) {
      a.out.counts[img] = 0;
      if (a.error != nullptr) atomicExch(a.error, 1);
    }
    return;
  }
  const float* sc =
      a.scores +
      ((static_cast<int64_t>(b) * a.num_layers + li) * a.num_kv_heads + g) * a.score_cols;
  for (int i = threadIdx.x; i < n; i += kThreads) keys[i] = OrderKey(sc[i]);
  if (threadIdx.x == 0) {
    s_prefix = 0;
    s_remaining = k_cnn;
  }
  uint32_t mask = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    hist[threadIdx.x] = 0;
    __syncthreads();
    const uint32_t prefix = s_prefix;
    const int remaining = s_remaining;  // read before the scan's barriers; written after
    for (int i = threadIdx.x; i < n; i += kThreads) {
      if ((keys[i] & mask) == prefix) atomicAdd(&hist[(keys[i] >> shift) & 255u], 1);
    }
    __syncthreads();
    // Thread t takes digit 255 - t; the scan counts the keys of the larger digits, and the
    // one digit whose range holds the remaining k-th key extends the prefix.
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
  const int take_equal = s_remaining;  // how many keys equal to the threshold are kept

  const int total = CompactSelected(keys, n, threshold, take_equal, scratch, sel);
  if (threadIdx.x == 0) a.out.counts[img] = total;
}

// One thread per (sparse layer * KV head, sequence): merges the three ascending runs -- sink
// blocks, the selection, the local window's blocks -- into one ascending list (a block in
// two runs once, from the lower first token), then resolves the slots.
__global__ void BuildListsKernel(const BuildListsArgs a) {
  const int b = blockIdx.y, g = blockIdx.x % a.num_kv_heads;
  const int li = a.layer_begin + blockIdx.x / a.num_kv_heads;
  if (threadIdx.x != 0) return;
  const int len = a.context_lens[b];
  const int slot = a.seq_slots[b];
  const int row = b * a.num_kv_heads + g;
  const int64_t lrow = static_cast<int64_t>(li) * a.rows_per_layer + row;
  if (li == 0 && a.calib_counts != nullptr)
    a.calib_counts[row] = a.dense != nullptr && a.dense[b] != 0 ? -1 : 0;
  if (!a.sel_checked && a.sel.lens[slot] != len) {
    atomicExch(a.error, 1);
    a.counts[lrow] = 0;  // attend to nothing rather than to garbage; the step fails
    return;
  }
  const int64_t img = (static_cast<int64_t>(slot) * a.sel.num_layers + li) * a.sel.kv_heads + g;
  const int nsel = a.sel.counts[img];
  const int32_t* sel = a.sel.blocks + img * a.sel.stride;
  const int nb = NumBlocks(len), sb = SinkBlocks(len), fl = FirstLocalBlock(len);
  const int local_first_token = LocalStart(len) % kBlockTokens;
  int32_t* blocks = a.blocks + lrow * a.list_stride;
  int32_t* slots = a.slots + lrow * a.list_stride;
  int32_t* starts = a.starts + lrow * a.list_stride;
  const int64_t trow = static_cast<int64_t>(slot) * a.table.table_stride;
  const int slot_add = (a.first_layer + li) * a.table.num_kv_heads + g;
  const int next = a.extra_counts != nullptr ? a.extra_counts[row] : 0;
  const int32_t* ext = a.extra_blocks + static_cast<int64_t>(row) * a.extra_stride;
  int i_sink = 0, i_sel = 0, i_ext = 0, i_loc = fl, n = 0;
  while (i_sink < sb || i_sel < nsel || i_ext < next || i_loc < nb) {
    const int bs = i_sink < sb ? i_sink : INT_MAX;
    const int bc = i_sel < nsel ? sel[i_sel] : INT_MAX;
    const int bx = i_ext < next ? ext[i_ext] : INT_MAX;
    const int bl = i_loc < nb ? i_loc : INT_MAX;
    const int blk = min(min(bs, bx), min(bc, bl));
    int first = kBlockTokens, given_slot = -1;
    if (bs == blk) {
      first = 0;
      ++i_sink;
    }
    if (bc == blk) {
      first = 0;
      ++i_sel;
    }
    if (bx == blk) {
      first = 0;
      if (a.extra_slots != nullptr)
        given_slot = a.extra_slots[static_cast<int64_t>(row) * a.extra_stride + i_ext];
      ++i_ext;
    }
    if (bl == blk) {
      first = min(first, blk == fl ? local_first_token : 0);
      ++i_loc;
    }
    if (n >= a.list_stride) {
      atomicExch(a.error, 1);
      break;
    }
    blocks[n] = blk;
    starts[n] = first;
    if (given_slot >= 0) {
      slots[n] = given_slot;  // fetched for this step outside the cache (hybrid_select.h)
    } else if (a.cache.where != nullptr) {
      const int64_t img =
          (static_cast<int64_t>(slot) * a.cache.layers + a.first_layer + li) * a.cache.kv_heads + g;
      const int c = a.cache.where[img * a.cache.max_blocks + blk];
      if (c < 0) {
        atomicExch(a.error, 1);
        a.counts[lrow] = 0;
        return;
      }
      slots[n] = static_cast<int32_t>(img * a.cache.slots + c);
    } else {
      slots[n] = a.table.group_table[trow + blk] * a.table.slots_per_group + slot_add;
    }
    ++n;
  }
  a.counts[lrow] = n;
}

__global__ void ReuseSelectionKernel(Selection sel, const int32_t* seq_slots,
                                     const int32_t* next_lens, int batch) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b < batch) sel.lens[seq_slots[b]] = next_lens[b];
}

}  // namespace

cudaError_t LaunchTopkSelect(TopkArgs a, cudaStream_t stream) {
  if (a.batch == 0 || a.num_layers == 0) return cudaSuccess;
  if (a.layer_count == 0) {
    a.layer_begin = 0;
    a.layer_count = a.num_layers;
  }
  if (a.out.stride < (a.k_blocks > 2 ? a.k_blocks : 2) ||
      a.layer_begin + a.layer_count > a.num_layers)
    return cudaErrorInvalidValue;
  // Keys for up to score_cols candidates (more is an error the kernel reports).
  const size_t keys_bytes =
      sizeof(uint32_t) * static_cast<size_t>(std::min(a.score_cols, kTopkMaxCandidates));
  TopkKernel<<<dim3(a.layer_count * a.num_kv_heads, a.batch), kThreads, keys_bytes, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t LaunchBuildLists(const BuildListsArgs& a, cudaStream_t stream) {
  if (a.batch == 0 || a.num_layers == 0) return cudaSuccess;
  if (a.rows_per_layer < a.batch * a.num_kv_heads) return cudaErrorInvalidValue;
  const int layers = a.layer_count > 0 ? a.layer_count : a.num_layers;
  if (a.layer_begin < 0 || a.layer_begin + layers > a.num_layers ||
      (a.extra_counts != nullptr && layers != 1))
    return cudaErrorInvalidValue;
  BuildListsKernel<<<dim3(layers * a.num_kv_heads, a.batch), 32, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t LaunchReuseSelection(Selection sel, const int32_t* seq_slots, const int32_t* next_lens,
                                 int batch, cudaStream_t stream) {
  if (batch == 0) return cudaSuccess;
  ReuseSelectionKernel<<<1, 32 * CeilDivInt(batch, 32), 0, stream>>>(sel, seq_slots, next_lens,
                                                                     batch);
  return cudaGetLastError();
}

}  // namespace apr::cuda
