#include "backends/cuda/device_utils.cuh"
#include "backends/cuda/gemv.h"
#include "backends/cuda/gemv_mma.h"

namespace apr::cuda {
namespace {

constexpr int kRows = 4;    // output rows per CTA (kSwiGlu: 2 gate rows and their 2 up rows)
constexpr int kWarps = 4;   // split k between them
constexpr int kUnroll = 4;  // 16-byte chunks per row in flight per lane

// The CTA's W rows (clamped to a.m; kSwiGlu: 2 gate rows, then their up rows) and which
// of them are outputs.
template <GemvEpilogue E>
__device__ __forceinline__ void CtaRows(const GemvArgs& a, int (&rows)[kRows],
                                        bool (&valid)[kRows]) {
  if constexpr (E == GemvEpilogue::kSwiGlu) {
    const int r0 = blockIdx.x * 2;
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      valid[j] = valid[j + 2] = r0 + j < a.m;
      rows[j] = valid[j] ? r0 + j : r0;
      rows[j + 2] = a.m + rows[j];
    }
  } else {
    const int r0 = blockIdx.x * kRows;
#pragma unroll
    for (int j = 0; j < kRows; ++j) {
      valid[j] = r0 + j < a.m;
      rows[j] = valid[j] ? r0 + j : r0;
    }
  }
}

// After the barrier: thread (t, j) sums the warps' partials of row j, token t, and stores
// it with the epilogue E.
template <int N, GemvEpilogue E>
__device__ __forceinline__ void SumAndStore(const GemvArgs& a, const float (&red)[kWarps][kRows][N],
                                            const int (&rows)[kRows], const bool (&valid)[kRows]) {
  if (threadIdx.x >= kRows * N) return;
  const int t = threadIdx.x / kRows, j = threadIdx.x % kRows;
  float sum = 0.f;
#pragma unroll
  for (int wi = 0; wi < kWarps; ++wi) sum += red[wi][j][t];
  if constexpr (E == GemvEpilogue::kSwiGlu) {
    if (j >= 2 || !valid[j]) return;
    float up = 0.f;
#pragma unroll
    for (int wi = 0; wi < kWarps; ++wi) up += red[wi][j + 2][t];
    a.out[static_cast<int64_t>(t) * a.m + rows[j]] =
        __float2bfloat16_rn(sum / (1.0f + __expf(-sum)) * up);
  } else {
    if (!valid[j]) return;
    float* y = a.y + static_cast<int64_t>(t) * a.ldy + rows[j];
    if constexpr (E == GemvEpilogue::kAccumulate) {
      *y += sum;
    } else {
      *y = sum;
    }
  }
}

// One CTA per kRows output rows and all n tokens. The four warps split k: lane l of warp w
// reads chunks (8 elements, 16 bytes) c = l + 32 w + 128 j of each row, so every load
// instruction of a warp covers 512 contiguous bytes and a k = 4096 row is requested in one
// round trip. Partial sums meet in shared memory. Weights are read with streaming loads;
// the first batch is requested before PdlWait, i.e. while the previous kernel finishes.
template <int N, GemvEpilogue E>
__global__ void __launch_bounds__(kWarps * 32) GemvFmaKernel(GemvArgs a) {
  PdlTrigger();
  __shared__ float red[kWarps][kRows][N];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int k = a.k, chunks = k / 8;
  int rows[kRows];
  bool valid[kRows];
  CtaRows<E>(a, rows, valid);
  const uint4* w[kRows];
#pragma unroll
  for (int j = 0; j < kRows; ++j)
    w[j] = reinterpret_cast<const uint4*>(a.w + static_cast<int64_t>(rows[j]) * k);
  const uint4* x = reinterpret_cast<const uint4*>(a.x);

  float acc[kRows][N];
#pragma unroll
  for (int j = 0; j < kRows; ++j)
#pragma unroll
    for (int t = 0; t < N; ++t) acc[j][t] = 0.f;

  auto fma_chunk = [&](const uint4(&wv)[kRows], int c) {
    float wf[kRows][8];  // each weight converted once, used for all N tokens
#pragma unroll
    for (int j = 0; j < kRows; ++j) Bf16x8ToFloat(wv[j], wf[j]);
#pragma unroll
    for (int t = 0; t < N; ++t) {
      float xf[8];
      Bf16x8ToFloat(LoadAfterWait(x + static_cast<int64_t>(t) * chunks + c), xf);
#pragma unroll
      for (int j = 0; j < kRows; ++j)
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[j][t] = fmaf(wf[j][e], xf[e], acc[j][t]);
    }
  };

  constexpr int kStride = 32 * kWarps;
  int c = lane + 32 * warp;
  bool waited = false;
  for (; c + kStride * (kUnroll - 1) < chunks; c += kStride * kUnroll) {
    uint4 wv[kUnroll][kRows];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int j = 0; j < kRows; ++j) wv[u][j] = LoadStreaming(w[j] + c + kStride * u);
    if (!waited) {
      PdlWait();  // x (the previous kernel's output) is read from here on
      waited = true;
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) fma_chunk(wv[u], c + kStride * u);
  }
  if (!waited) PdlWait();
  for (; c < chunks; c += kStride) {
    uint4 wv[kRows];
#pragma unroll
    for (int j = 0; j < kRows; ++j) wv[j] = LoadStreaming(w[j] + c);
    fma_chunk(wv, c);
  }

#pragma unroll
  for (int j = 0; j < kRows; ++j)
#pragma unroll
    for (int t = 0; t < N; ++t) {
      const float v = WarpSum(acc[j][t]);
      if (lane == 0) red[warp][j][t] = v;
    }
  __syncthreads();
  SumAndStore<N, E>(a, red, rows, valid);
}

template <int N, GemvEpilogue E>
cudaError_t LaunchN(const GemvArgs& a, cudaStream_t stream) {
  const int rows_per_cta = E == GemvEpilogue::kSwiGlu ? 2 : kRows;
  return LaunchMaybePdl(GemvFmaKernel<N, E>, dim3(CeilDivInt(a.m, rows_per_cta)), dim3(kWarps * 32),
                        a.pdl, stream, a);
}

template <GemvEpilogue E>
cudaError_t Dispatch(const GemvArgs& a, cudaStream_t stream) {
  switch (a.n) {
    case 1:
      return LaunchN<1, E>(a, stream);
    case 2:
      return LaunchN<2, E>(a, stream);
    case 3:
      return LaunchN<3, E>(a, stream);
    case 4:
      return LaunchN<4, E>(a, stream);
    case 5:
      return LaunchN<5, E>(a, stream);
    case 6:
      return LaunchN<6, E>(a, stream);
    case 7:
      return LaunchN<7, E>(a, stream);
    case 8:
      return LaunchN<8, E>(a, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace

cudaError_t LaunchGemv(const GemvArgs& a, cudaStream_t stream) {
  if (a.k % 8 != 0 || a.n < 1 || a.n > kGemvMaxTokens || a.m < 1) return cudaErrorInvalidValue;
  if (a.kernel == GemvKernel::kTensorCores ||
      (a.kernel == GemvKernel::kAuto && a.n >= kGemvTensorCoreMinTokens)) {
    return LaunchGemvMma(a, kGemvMmaDefaultShape, stream);
  }
  switch (a.epilogue) {
    case GemvEpilogue::kStore:
      return Dispatch<GemvEpilogue::kStore>(a, stream);
    case GemvEpilogue::kAccumulate:
      return Dispatch<GemvEpilogue::kAccumulate>(a, stream);
    case GemvEpilogue::kSwiGlu:
      return Dispatch<GemvEpilogue::kSwiGlu>(a, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace apr::cuda
