#include "backends/cuda/device_utils.cuh"
#include "backends/cuda/gemv_mma.h"

namespace apr::cuda {
namespace {

constexpr int kChunk = 32;  // k per chunk: two m16n8k16 steps

// Warp 0's epilogue: stores the summed C fragment (out_row as in GemvMmaKernel) with E.
template <GemvEpilogue E>
__device__ __forceinline__ void StoreFragment(const GemvArgs& a, const float (&acc)[4],
                                              const int (&out_row)[2], int c) {
  // C fragment: acc[0..1] row g, tokens 2c and 2c + 1; acc[2..3] row g + 8, same tokens.
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    const int t = 2 * c + e;
    if (t >= a.n) continue;
    if constexpr (E == GemvEpilogue::kSwiGlu) {
      const int r = out_row[0];
      if (r >= a.m) continue;
      const float gate = acc[e], up = acc[2 + e];
      a.out[static_cast<int64_t>(t) * a.m + r] =
          __float2bfloat16_rn(gate / (1.0f + __expf(-gate)) * up);
    } else {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = out_row[h];
        if (r >= a.m) continue;
        float* y = a.y + static_cast<int64_t>(t) * a.ldy + r;
        if constexpr (E == GemvEpilogue::kAccumulate) {
          *y += acc[2 * h + e];
        } else {
          *y = acc[2 * h + e];
        }
      }
    }
  }
}

// A CTA multiplies a 16-row tile of W by up to 8 tokens with mma.m16n8k16: W's rows are the
// A operand, the tokens B's 8 columns; its warps split k. Lane l (g = l / 4, c = l % 4)
// loads 16 bytes, k elements 8c .. 8c + 7 of a 32-wide chunk, of tile rows g and g + 8 and
// of token g. A dot product does not care in which order k is summed, so the chunk's k is
// permuted to fit the fragments instead of moving registers between lanes: the first mma's
// logical k slots 2c, 2c + 1, 2c + 8, 2c + 9 are elements 8c + 0..3, the second's
// 8c + 4..7, for W and x alike. Four lanes read 64 contiguous bytes of a row and the warps
// the chunk's neighbours, as in the CUDA-core kernel; weights are requested before PdlWait.
// The warps' partial C fragments meet in shared memory.
//
// A tile is 16 consecutive rows of W; for kSwiGlu 8 gate rows (A rows 0..7) and their 8 up
// rows (A rows 8..15), so that a lane's C fragment holds the gate and the up of the same
// outputs. Tokens n .. 7 read token n - 1 and are never stored.
template <int kWarps, int kUnroll, GemvEpilogue E>
__global__ void __launch_bounds__(kWarps * 32) GemvMmaKernel(GemvArgs a) {
  PdlTrigger();
  constexpr int kOutRows = E == GemvEpilogue::kSwiGlu ? 8 : 16;  // outputs per tile
  __shared__ float red[kWarps - 1][4][32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int g = lane / 4, c = lane % 4, k = a.k;

  int out_row[2];  // output row of C rows g and g + 8 (kSwiGlu: [0] only)
  const bf16* w[2];
  const int base = blockIdx.x * kOutRows;
  if constexpr (E == GemvEpilogue::kSwiGlu) {
    out_row[0] = out_row[1] = base + g;
    const int r = min(base + g, a.m - 1);
    w[0] = a.w + static_cast<int64_t>(r) * k + 8 * c;
    w[1] = a.w + static_cast<int64_t>(a.m + r) * k + 8 * c;
  } else {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      out_row[h] = base + g + 8 * h;
      w[h] = a.w + static_cast<int64_t>(min(out_row[h], a.m - 1)) * k + 8 * c;
    }
  }
  const bf16* x = a.x + static_cast<int64_t>(min(g, a.n - 1)) * k + 8 * c;

  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  auto mma_chunk = [&](const uint4(&wv)[2], const uint4& xv) {
    const uint32_t lo[4] = {wv[0].x, wv[1].x, wv[0].y, wv[1].y};
    Mma16816(acc, lo, xv.x, xv.y);
    const uint32_t hi[4] = {wv[0].z, wv[1].z, wv[0].w, wv[1].w};
    Mma16816(acc, hi, xv.z, xv.w);
  };

  const int full = k / kChunk, chunks = CeilDivInt(k, kChunk);
  int q = warp;
  bool waited = false;
  for (; q + kWarps * (kUnroll - 1) < full; q += kWarps * kUnroll) {
    uint4 wv[kUnroll][2];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int h = 0; h < 2; ++h) wv[u][h] = LoadStreaming(w[h] + (q + kWarps * u) * kChunk);
    if (!waited) {
      PdlWait();  // x (the previous kernel's output) is read from here on
      waited = true;
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      mma_chunk(wv[u], LoadAfterWait(x + (q + kWarps * u) * kChunk));
  }
  if (!waited) PdlWait();
  // The rest, one chunk at a time; in the last one (k % 32 != 0) some lanes are past k and
  // contribute zeros. The loop bound is the same for the whole warp, as mma.sync needs.
  for (; q < chunks; q += kWarps) {
    const bool in_k = q * kChunk + 8 * c < k;
    const uint4 zero = make_uint4(0, 0, 0, 0);
    uint4 wv[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) wv[h] = in_k ? LoadStreaming(w[h] + q * kChunk) : zero;
    mma_chunk(wv, in_k ? LoadAfterWait(x + q * kChunk) : zero);
  }

  if (warp > 0) {
#pragma unroll
    for (int e = 0; e < 4; ++e) red[warp - 1][e][lane] = acc[e];
  }
  __syncthreads();
  if (warp > 0) return;
#pragma unroll
  for (int e = 0; e < 4; ++e)
#pragma unroll
    for (int wi = 0; wi < kWarps - 1; ++wi) acc[e] += red[wi][e][lane];

  StoreFragment<E>(a, acc, out_row, c);
}

template <int kWarps, int kUnroll, GemvEpilogue E>
cudaError_t Launch(const GemvArgs& a, cudaStream_t stream) {
  const int outputs_per_cta = E == GemvEpilogue::kSwiGlu ? 8 : 16;
  return LaunchMaybePdl(GemvMmaKernel<kWarps, kUnroll, E>, dim3(CeilDivInt(a.m, outputs_per_cta)),
                        dim3(kWarps * 32), a.pdl, stream, a);
}

template <int kWarps, int kUnroll>
cudaError_t DispatchEpilogue(const GemvArgs& a, cudaStream_t stream) {
  switch (a.epilogue) {
    case GemvEpilogue::kStore:
      return Launch<kWarps, kUnroll, GemvEpilogue::kStore>(a, stream);
    case GemvEpilogue::kAccumulate:
      return Launch<kWarps, kUnroll, GemvEpilogue::kAccumulate>(a, stream);
    case GemvEpilogue::kSwiGlu:
      return Launch<kWarps, kUnroll, GemvEpilogue::kSwiGlu>(a, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace

cudaError_t LaunchGemvMma(const GemvArgs& a, GemvMmaShape shape, cudaStream_t stream) {
  if (shape.warps == 4 && shape.unroll == 4) return DispatchEpilogue<4, 4>(a, stream);
  if (shape.warps == 8 && shape.unroll == 8) return DispatchEpilogue<8, 8>(a, stream);
  if (shape.warps == 16 && shape.unroll == 8) return DispatchEpilogue<16, 8>(a, stream);
  return cudaErrorInvalidValue;
}

}  // namespace apr::cuda
