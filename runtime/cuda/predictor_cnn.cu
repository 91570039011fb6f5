#include "runtime/cuda/block_rules.h"
#include "runtime/cuda/device_utils.cuh"
#include "runtime/cuda/predictor_cnn.h"

namespace apr::cuda {
namespace {

constexpr int kTileCols = 16;  // output columns per CTA (one mma M tile)
constexpr int kWarps = 4;      // each warp: 16 of the 64 rows
constexpr int kRowsIn = kHistoryRows + 2;     // conv1 output rows -1 .. 64
constexpr int kColsC1 = kTileCols + 2;        // conv1 output cols c0 - 1 .. c0 + 16
constexpr int kColsX = kTileCols + 4;         // input cols c0 - 2 .. c0 + 17
constexpr int kChannels1 = 16, kChannels2 = 32;

// conv1 outputs as [row][col][16 channels] bf16, 32 bytes per pixel; the two 16-byte
// halves are swapped on every other group of 4 pixels, so that ldmatrix's 8 row reads
// (8 consecutive pixels, same half) hit 8 distinct bank groups.
__device__ __forceinline__ int C1Offset(int pixel, int half) {
  return pixel * 32 + ((half ^ ((pixel >> 2) & 1)) * 16);
}

__device__ __forceinline__ void Mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
      "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t PackBf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

__global__ void __launch_bounds__(kWarps * 32) PredictorCnnKernel(const PredictorCnnArgs a) {
  __shared__ float sx[kRowsIn][kColsX];
  __shared__ __align__(128) unsigned char sc1[kRowsIn * kColsC1 * 32];
  __shared__ float sw1[kChannels1 * 9 + kChannels1];
  // After the mma loop the conv1 tile is dead; its space holds the per-warp column sums.
  static_assert(sizeof(float) * kWarps * kTileCols * (kChannels2 + 1) <= sizeof(sc1));
  auto sred = reinterpret_cast<float (*)[kTileCols][kChannels2 + 1]>(sc1);

  const int b = blockIdx.z;
  const int li = blockIdx.y / a.num_kv_heads, g = blockIdx.y % a.num_kv_heads;
  const int len = a.next_lens[b];
  if (!NeedsPrediction(len, a.k_blocks)) return;
  const int width = NumCandidates(len);
  const int c0 = blockIdx.x * kTileCols;
  if (c0 >= width) return;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const float* w = a.weights;

  const HistoryView& h = a.history;
  const float* img = h.data + ((static_cast<int64_t>(a.seq_slots[b]) * h.layers + a.first_layer +
                                li) * h.kv_heads + g) * h.rows * h.cols;
  const int oldest = (a.history_row[b] + 1) % kHistoryRows;

  // Input tile, zero outside the image (rows -1 and 64, columns outside [0, width)).
  for (int i = tid; i < kRowsIn * kColsX; i += blockDim.x) {
    const int xr = i / kColsX, xc = i % kColsX;
    const int r = xr - 1, c = c0 - 2 + xc;
    float v = 0.f;
    if (r >= 0 && r < kHistoryRows && c >= 0 && c < width)
      v = img[static_cast<int64_t>((oldest + r) % kHistoryRows) * h.cols + kSinkBlocks + c];
    sx[xr][xc] = v;
  }
  for (int i = tid; i < kChannels1 * 10; i += blockDim.x) sw1[i] = w[PredictorLayout::kConv1W + i];
  __syncthreads();

  // conv1 + ReLU; zero where conv2 sees padding.
  for (int p = tid; p < kRowsIn * kColsC1; p += blockDim.x) {
    const int ro = p / kColsC1, co = p % kColsC1;
    const int r = ro - 1, c = c0 - 1 + co;
    float out[kChannels1];
    if (r >= 0 && r < kHistoryRows && c >= 0 && c < width) {
      float win[9];
#pragma unroll
      for (int dy = 0; dy < 3; ++dy)
#pragma unroll
        for (int dx = 0; dx < 3; ++dx) win[dy * 3 + dx] = sx[ro - 1 + dy][co + dx];
#pragma unroll
      for (int oc = 0; oc < kChannels1; ++oc) {
        float acc = sw1[kChannels1 * 9 + oc];
#pragma unroll
        for (int t = 0; t < 9; ++t) acc = fmaf(sw1[oc * 9 + t], win[t], acc);
        out[oc] = fmaxf(acc, 0.f);
      }
    } else {
#pragma unroll
      for (int oc = 0; oc < kChannels1; ++oc) out[oc] = 0.f;
    }
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      uint4 v;
      v.x = PackBf16(out[half * 8 + 0], out[half * 8 + 1]);
      v.y = PackBf16(out[half * 8 + 2], out[half * 8 + 3]);
      v.z = PackBf16(out[half * 8 + 4], out[half * 8 + 5]);
      v.w = PackBf16(out[half * 8 + 6], out[half * 8 + 7]);
      *reinterpret_cast<uint4*>(sc1 + C1Offset(p, half)) = v;
    }
  }

  // conv2 weights as mma B fragments (k = input channel, n = output channel), per tap.
  const int fg = lane / 4, ft = lane % 4;
  uint32_t bfrag[9][4][2];
#pragma unroll
  for (int tap = 0; tap < 9; ++tap) {
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      const float* w2 = w + PredictorLayout::kConv2W + (nt * 8 + fg) * kChannels1 * 9 + tap;
      bfrag[tap][nt][0] = PackBf16(w2[(2 * ft) * 9], w2[(2 * ft + 1) * 9]);
      bfrag[tap][nt][1] = PackBf16(w2[(2 * ft + 8) * 9], w2[(2 * ft + 9) * 9]);
    }
  }
  float bias2[4][2];
#pragma unroll
  for (int nt = 0; nt < 4; ++nt) {
    bias2[nt][0] = w[PredictorLayout::kConv2B + nt * 8 + 2 * ft];
    bias2[nt][1] = w[PredictorLayout::kConv2B + nt * 8 + 2 * ft + 1];
  }
  __syncthreads();

  float colsum[4][4];
#pragma unroll
  for (int nt = 0; nt < 4; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) colsum[nt][i] = 0.f;

  const uint32_t c1_base = static_cast<uint32_t>(__cvta_generic_to_shared(sc1));
  const int a_m = lane % 8 + 8 * ((lane / 8) % 2), a_half = lane / 16;
  for (int rr = 0; rr < kHistoryRows / kWarps; ++rr) {
    const int r = warp * (kHistoryRows / kWarps) + rr;
    float acc[4][4];
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[nt][i] = 0.f;
#pragma unroll
    for (int ky = 0; ky < 3; ++ky) {
#pragma unroll
      for (int kx = 0; kx < 3; ++kx) {
        // Output pixel (r, c0 + m) reads conv1 at (r + ky - 1, c0 + m + kx - 1), i.e. tile
        // row r + ky, tile col m + kx.
        const int pixel = (r + ky) * kColsC1 + a_m + kx;
        uint32_t af[4];
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                     : "=r"(af[0]), "=r"(af[1]), "=r"(af[2]), "=r"(af[3])
                     : "r"(c1_base + C1Offset(pixel, a_half)));
#pragma unroll
        for (int nt = 0; nt < 4; ++nt)
          Mma16816(acc[nt], af, bfrag[ky * 3 + kx][nt][0], bfrag[ky * 3 + kx][nt][1]);
      }
    }
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) colsum[nt][i] += fmaxf(acc[nt][i] + bias2[nt][i % 2], 0.f);
  }
  __syncthreads();  // every warp is done reading sc1
  // Accumulator layout: [nt][0..1] -> pixel fg, channels nt*8 + 2ft + {0,1};
  //                     [nt][2..3] -> pixel fg + 8, same channels.
#pragma unroll
  for (int nt = 0; nt < 4; ++nt) {
    sred[warp][fg][nt * 8 + 2 * ft] = colsum[nt][0];
    sred[warp][fg][nt * 8 + 2 * ft + 1] = colsum[nt][1];
    sred[warp][fg + 8][nt * 8 + 2 * ft] = colsum[nt][2];
    sred[warp][fg + 8][nt * 8 + 2 * ft + 1] = colsum[nt][3];
  }
  __syncthreads();
  if (tid < kTileCols && c0 + tid < width) {
    float s = w[PredictorLayout::kConv3B];
    for (int ch = 0; ch < kChannels2; ++ch) {
      float t = 0.f;
#pragma unroll
      for (int wi = 0; wi < kWarps; ++wi) t += sred[wi][tid][ch];
      s = fmaf(w[PredictorLayout::kConv3W + ch], t * (1.0f / kHistoryRows), s);
    }
    a.scores[((static_cast<int64_t>(b) * a.num_layers + li) * a.num_kv_heads + g) * a.score_cols +
             c0 + tid] = s;
  }
}

}  // namespace

cudaError_t LaunchPredictorCnn(const PredictorCnnArgs& a, cudaStream_t stream) {
  if (a.batch == 0 || a.num_layers == 0 || a.max_cols <= 0) return cudaSuccess;
  if (a.history.rows != kHistoryRows || a.max_cols > a.score_cols) return cudaErrorInvalidValue;
  const dim3 grid(CeilDivInt(a.max_cols, kTileCols), a.num_layers * a.num_kv_heads, a.batch);
  PredictorCnnKernel<<<grid, kWarps * 32, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace apr::cuda
