#include "runtime/cuda/device_utils.cuh"
#include "runtime/cuda/gemv.h"

namespace apr::cuda {
namespace {

constexpr int kRowsPerWarp = 4;
constexpr int kWarps = 4;
constexpr int kUnroll = 4;  // 16-byte chunks per row in flight per lane

// Each warp owns kRowsPerWarp output rows (for kSwiGlu: gate rows r, r+1 and the up rows
// m+r, m+r+1) and all n tokens; lanes stride over k in 8-element chunks.
template <int N, GemvEpilogue E>
__global__ void __launch_bounds__(kWarps * 32) GemvKernel(GemvArgs a) {
  const int lane = threadIdx.x % 32;
  const int warp = blockIdx.x * kWarps + threadIdx.x / 32;
  const int k = a.k, chunks = k / 8;
  int rows[kRowsPerWarp];
  bool valid[kRowsPerWarp];
  if constexpr (E == GemvEpilogue::kSwiGlu) {
    const int r0 = warp * 2;
    if (r0 >= a.m) return;
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      valid[j] = valid[j + 2] = r0 + j < a.m;
      rows[j] = valid[j] ? r0 + j : r0;
      rows[j + 2] = a.m + rows[j];
    }
  } else {
    const int r0 = warp * kRowsPerWarp;
    if (r0 >= a.m) return;
#pragma unroll
    for (int j = 0; j < kRowsPerWarp; ++j) {
      valid[j] = r0 + j < a.m;
      rows[j] = valid[j] ? r0 + j : r0;
    }
  }
  const uint4* w[kRowsPerWarp];
#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j)
    w[j] = reinterpret_cast<const uint4*>(a.w + static_cast<int64_t>(rows[j]) * k);
  const uint4* x = reinterpret_cast<const uint4*>(a.x);

  float acc[kRowsPerWarp][N];
#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j)
#pragma unroll
    for (int t = 0; t < N; ++t) acc[j][t] = 0.f;

  auto fma_chunk = [&](const uint4 (&wv)[kRowsPerWarp], int c) {
#pragma unroll
    for (int t = 0; t < N; ++t) {
      float xf[8];
      Bf16x8ToFloat(__ldg(x + static_cast<int64_t>(t) * chunks + c), xf);
#pragma unroll
      for (int j = 0; j < kRowsPerWarp; ++j) {
        float wf[8];
        Bf16x8ToFloat(wv[j], wf);
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[j][t] = fmaf(wf[e], xf[e], acc[j][t]);
      }
    }
  };

  int c = lane;
  for (; c + 32 * (kUnroll - 1) < chunks; c += 32 * kUnroll) {
    uint4 wv[kUnroll][kRowsPerWarp];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int j = 0; j < kRowsPerWarp; ++j) wv[u][j] = LoadStreaming(w[j] + c + 32 * u);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) fma_chunk(wv[u], c + 32 * u);
  }
  for (; c < chunks; c += 32) {
    uint4 wv[kRowsPerWarp];
#pragma unroll
    for (int j = 0; j < kRowsPerWarp; ++j) wv[j] = LoadStreaming(w[j] + c);
    fma_chunk(wv, c);
  }

#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j)
#pragma unroll
    for (int t = 0; t < N; ++t) acc[j][t] = WarpSum(acc[j][t]);

  // Lane t writes token t's results (N <= 8 < 32).
#pragma unroll
  for (int t = 0; t < N; ++t) {
    if (lane != t) continue;
    if constexpr (E == GemvEpilogue::kSwiGlu) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        if (!valid[j]) continue;
        const float g = acc[j][t], u = acc[j + 2][t];
        a.out[static_cast<int64_t>(t) * a.m + rows[j]] =
            __float2bfloat16_rn(g / (1.0f + __expf(-g)) * u);
      }
    } else {
#pragma unroll
      for (int j = 0; j < kRowsPerWarp; ++j) {
        if (!valid[j]) continue;
        float* y = a.y + static_cast<int64_t>(t) * a.ldy + rows[j];
        if constexpr (E == GemvEpilogue::kAccumulate) {
          *y += acc[j][t];
        } else {
          *y = acc[j][t];
        }
      }
    }
  }
}

template <GemvEpilogue E>
cudaError_t Dispatch(const GemvArgs& a, cudaStream_t stream) {
  const int rows_per_warp = E == GemvEpilogue::kSwiGlu ? 2 : kRowsPerWarp;
  const int warps = CeilDivInt(a.m, rows_per_warp);
  const dim3 grid(CeilDivInt(warps, kWarps)), block(kWarps * 32);
  switch (a.n) {
    case 1: GemvKernel<1, E><<<grid, block, 0, stream>>>(a); break;
    case 2: GemvKernel<2, E><<<grid, block, 0, stream>>>(a); break;
    case 3: GemvKernel<3, E><<<grid, block, 0, stream>>>(a); break;
    case 4: GemvKernel<4, E><<<grid, block, 0, stream>>>(a); break;
    case 5: GemvKernel<5, E><<<grid, block, 0, stream>>>(a); break;
    case 6: GemvKernel<6, E><<<grid, block, 0, stream>>>(a); break;
    case 7: GemvKernel<7, E><<<grid, block, 0, stream>>>(a); break;
    case 8: GemvKernel<8, E><<<grid, block, 0, stream>>>(a); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchGemv(const GemvArgs& a, cudaStream_t stream) {
  if (a.k % 8 != 0 || a.n < 1 || a.n > kGemvMaxTokens || a.m < 1) return cudaErrorInvalidValue;
  switch (a.epilogue) {
    case GemvEpilogue::kStore: return Dispatch<GemvEpilogue::kStore>(a, stream);
    case GemvEpilogue::kAccumulate: return Dispatch<GemvEpilogue::kAccumulate>(a, stream);
    case GemvEpilogue::kSwiGlu: return Dispatch<GemvEpilogue::kSwiGlu>(a, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace apr::cuda
