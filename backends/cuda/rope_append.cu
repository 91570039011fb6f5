#include "backends/cuda/block_rules.h"
#include "backends/cuda/device_utils.cuh"
#include "backends/cuda/rope_append.h"

namespace apr::cuda {
namespace {

// One block per token. Rotation pairs (i, i + head_dim / 2) ("rotate_half"), angles as
// transformers computes them: float32 position * inv_freq, cos/sin of that float (times
// the attention factor, as runtime/rope.cc MakeRopeTable).
__global__ void RopeAppendKernel(RopeAppendArgs a) {
  const int i = blockIdx.x;
  const int hd = a.head_dim, half = hd / 2, nh = a.num_heads, nkv = a.num_kv_heads;
  const int pos = a.positions[i];
  const float* row = a.qkv + static_cast<int64_t>(i) * (nh + 2 * nkv) * hd;
  const int seq = a.seq_slots[i], blk = pos / kBlockTokens;
  // Slot of KV head g's block: the resident pool's group table, or the offload cache.
  auto slot_of = [&](int g) -> int64_t {
    if (a.cache.where != nullptr) {
      const int64_t img = (static_cast<int64_t>(seq) * a.cache.layers + a.layer) * nkv + g;
      return img * a.cache.slots + a.cache.where[img * a.cache.max_blocks + blk];
    }
    const int64_t group =
        a.table.group_table[static_cast<int64_t>(seq) * a.table.table_stride + blk];
    return group * a.table.slots_per_group + static_cast<int64_t>(a.layer) * nkv + g;
  };
  const int64_t slot_elems = 2 * kBlockTokens * hd;
  const int in_block = pos % kBlockTokens;
  const float* inv_freq =
      a.inv_freq_long != nullptr && pos + 1 > a.long_after ? a.inv_freq_long : a.inv_freq;
  // Rotations of q heads and k heads.
  for (int t = threadIdx.x; t < (nh + nkv) * half; t += blockDim.x) {
    const int h = t / half, j = t % half;
    const float angle = static_cast<float>(pos) * inv_freq[j];
    double s, c;
    sincos(static_cast<double>(angle), &s, &c);
    // x * 1.0f is exact: models without an attention factor rotate as before.
    const float cf = static_cast<float>(c) * a.attention_factor;
    const float sf = static_cast<float>(s) * a.attention_factor;
    const float x0 = row[h * hd + j], x1 = row[h * hd + j + half];
    const float y0 = x0 * cf - x1 * sf, y1 = x1 * cf + x0 * sf;
    if (h < nh) {
      float* q = a.q_out + (static_cast<int64_t>(i) * nh + h) * hd;
      q[j] = y0;
      q[j + half] = y1;
    } else {
      bf16* k = a.pool + slot_of(h - nh) * slot_elems + in_block * hd;
      k[j] = __float2bfloat16_rn(y0);
      k[j + half] = __float2bfloat16_rn(y1);
    }
  }
  // Values: copied.
  for (int t = threadIdx.x; t < nkv * hd; t += blockDim.x) {
    const int g = t / hd, d = t % hd;
    bf16* v = a.pool + slot_of(g) * slot_elems + (kBlockTokens + in_block) * hd;
    v[d] = __float2bfloat16_rn(row[(nh + nkv + g) * hd + d]);
  }
  // The block is complete: its key summary (per channel min and max of the 16 keys; the
  // other 15 were written by earlier steps, this token's by this CTA before the barrier).
  if (a.key_summary != nullptr && in_block == kBlockTokens - 1) {
    __syncthreads();
    for (int t = threadIdx.x; t < nkv * hd; t += blockDim.x) {
      const int g = t / hd, d = t % hd;
      const bf16* k = a.pool + slot_of(g) * slot_elems + d;
      float mn = INFINITY, mx = -INFINITY;
#pragma unroll
      for (int r = 0; r < kBlockTokens; ++r) {
        const float x = __bfloat162float(k[r * hd]);
        mn = fminf(mn, x);
        mx = fmaxf(mx, x);
      }
      bf16* out =
          a.key_summary +
          (((static_cast<int64_t>(seq) * a.summary_layers + a.layer) * nkv + g) * a.summary_blocks +
           blk) *
              2 * hd;
      out[d] = __float2bfloat16_rn(mn);
      out[hd + d] = __float2bfloat16_rn(mx);
    }
  }
}

}  // namespace

cudaError_t LaunchRopeAppend(const RopeAppendArgs& a, cudaStream_t stream) {
  if (a.n == 0) return cudaSuccess;
  RopeAppendKernel<<<a.n, 256, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace apr::cuda
