#include <climits>

#include "runtime/cuda/block_rules.h"
#include "runtime/cuda/device_utils.cuh"
#include "runtime/cuda/predictor_cnn.h"

namespace apr::cuda {
namespace {

constexpr int kTileCols = 16;    // output columns per tile (one mma M tile)
constexpr int kTilesPerCta = 4;  // tiles a CTA takes in turn (amortises its setup)
constexpr int kWarps = 4;
constexpr int kRowsIn = kHistoryRows + 2;  // full path: conv1 rows -1 .. 64
constexpr int kColsC1 = kTileCols + 2;     // conv1 cols c0 - 1 .. c0 + 16
constexpr int kColsX = kTileCols + 4;      // input cols c0 - 2 .. c0 + 17
constexpr int kChannels1 = 16, kChannels2 = 32;
// Incremental path, per warp: up to 3 conv2 rows need 5 conv1 rows and 7 input rows.
constexpr int kSegOut = 3, kSegC1 = kSegOut + 2, kSegX = kSegOut + 4;

constexpr int kFullSmem = kRowsIn * kColsX * 4 + kRowsIn * kColsC1 * 32;
constexpr int kSegSmem = kSegX * kColsX * 4 + kSegC1 * kColsC1 * 32;
constexpr int kRedSmem = kWarps * kTileCols * (kChannels2 + 1) * 4;
constexpr int kSmem = kFullSmem > kWarps* kSegSmem ? kFullSmem : kWarps* kSegSmem;
static_assert(kRedSmem <= kRowsIn * kColsC1 * 32);
static_assert(kRedSmem <= kSmem);
// conv2 weights as per-lane mma B fragments: [9 taps][4 n-tiles][32 lanes] x 2 registers.
constexpr int kBfragSmem = kPredictorFragments * 8;
constexpr int kW1Smem = kChannels1 * 10 * 4;
constexpr int kDynSmem = kSmem + kBfragSmem + kW1Smem;

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

struct Image {
  const float* data;  // the image's ring [rows][cols]
  int ring, cols;
  int width;  // candidate columns
};

// Window row r (0 = oldest of the 64) of the window whose newest ring row is `newest`.
__device__ __forceinline__ float Pixel(const Image& im, int newest, int r, int c) {
  const int ring_row = ((newest - (kHistoryRows - 1) + r) % im.ring + im.ring) % im.ring;
  return im.data[static_cast<int64_t>(ring_row) * im.cols + kSinkBlocks + c];
}

// conv1 + ReLU of one pixel into 16 bf16 channels at the swizzled location; zero where
// (r, c) is outside the image (conv2's zero padding). x is the input tile, x_row0 the
// window row of its first row, columns from c0 - 2.
__device__ __forceinline__ void Conv1Pixel(const float* x, int x_row0, int c0, int r, int c,
                                           int width, const float* sw1, unsigned char* c1,
                                           int pixel) {
  float out[kChannels1];
  if (r >= 0 && r < kHistoryRows && c >= 0 && c < width) {
    float win[9];
#pragma unroll
    for (int dy = 0; dy < 3; ++dy)
#pragma unroll
      for (int dx = 0; dx < 3; ++dx)
        win[dy * 3 + dx] = x[(r - 1 + dy - x_row0) * kColsX + (c - 1 + dx - (c0 - 2))];
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
    *reinterpret_cast<uint4*>(c1 + C1Offset(pixel, half)) = v;
  }
}

// conv2 pre-activation of one output row for the tile's 16 columns: the conv1 rows used
// are tile rows c1_row .. c1_row + 2 of the buffer at c1_base (shared address).
__device__ __forceinline__ void Conv2Row(uint32_t c1_base, int c1_row, int lane, const uint2* bfrag,
                                         float (&acc)[4][4]) {
  const int a_m = lane % 8 + 8 * ((lane / 8) % 2), a_half = lane / 16;
#pragma unroll
  for (int nt = 0; nt < 4; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[nt][i] = 0.f;
#pragma unroll
  for (int ky = 0; ky < 3; ++ky) {
#pragma unroll
    for (int kx = 0; kx < 3; ++kx) {
      // Output pixel (row, c0 + m) reads conv1 at (row + ky - 1, c0 + m + kx - 1).
      const int pixel = (c1_row + ky) * kColsC1 + a_m + kx;
      uint32_t af[4];
      asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                   : "=r"(af[0]), "=r"(af[1]), "=r"(af[2]), "=r"(af[3])
                   : "r"(c1_base + C1Offset(pixel, a_half)));
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        const uint2 bf = bfrag[((ky * 3 + kx) * 4 + nt) * 32 + lane];
        Mma16816(acc[nt], af, bf.x, bf.y);
      }
    }
  }
}

__global__ void __launch_bounds__(kWarps * 32) PredictorCnnKernel(const PredictorCnnArgs a) {
  extern __shared__ __align__(128) unsigned char smem[];
  uint2* sbfrag = reinterpret_cast<uint2*>(smem + kSmem);
  float* sw1 = reinterpret_cast<float*>(smem + kSmem + kBfragSmem);

  const int b = blockIdx.z;
  const int li = a.layer_begin + blockIdx.y / a.num_kv_heads, g = blockIdx.y % a.num_kv_heads;
  const int len = a.next_lens[b];
  if (!NeedsPrediction(len, a.k_blocks)) return;
  const int width = NumCandidates(len);
  const int first_c0 = blockIdx.x * kTilesPerCta * kTileCols;
  if (first_c0 >= width) return;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const float* w = a.weights;
  const HistoryView& h = a.history;
  const int slot = a.seq_slots[b];
  const Image im{
      h.data + ((static_cast<int64_t>(slot) * h.layers + a.first_layer + li) * h.kv_heads + g) *
                   h.rows * h.cols,
      h.rows, h.cols, width};
  const int newest = a.history_row[b];
  const int64_t state_img = (static_cast<int64_t>(slot) * a.num_layers + li) * a.num_kv_heads + g;
  const int count = a.history_count != nullptr ? a.history_count[b] : -1;
  const bool state_fresh = a.state.colsum != nullptr && count > 0 &&
                           count % kCnnRefreshSteps != 0 && h.rows > kHistoryRows &&
                           a.state.count[state_img] >= 0 && a.state.count[state_img] == count - 1;
  const int state_width = a.state.colsum != nullptr ? a.state.width[state_img] : 0;

  for (int i = tid; i < kChannels1 * 10; i += blockDim.x) sw1[i] = w[PredictorLayout::kConv1W + i];
  for (int i = tid; i < kBfragSmem / 16; i += blockDim.x)
    reinterpret_cast<uint4*>(sbfrag)[i] = reinterpret_cast<const uint4*>(a.fragments)[i];
  const int fg = lane / 4, ft = lane % 4;
  const uint2* bfrag = sbfrag;
  float bias2[4][2];
#pragma unroll
  for (int nt = 0; nt < 4; ++nt) {
    bias2[nt][0] = w[PredictorLayout::kConv2B + nt * 8 + 2 * ft];
    bias2[nt][1] = w[PredictorLayout::kConv2B + nt * 8 + 2 * ft + 1];
  }

  for (int tile = 0; tile < kTilesPerCta; ++tile) {
    const int c0 = first_c0 + tile * kTileCols;
    if (c0 >= width) break;
    if (tile > 0) __syncthreads();  // the previous tile's reduction is read
    float* colsum = a.state.colsum != nullptr
                        ? a.state.colsum + (state_img * a.state.cols + c0) * kChannels2
                        : nullptr;
    const bool incremental = state_fresh && c0 + kTileCols <= state_width - 2;
    float colfrag[4][4];
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) colfrag[nt][i] = 0.f;

    if (!incremental) {
      // ---- Full path: the whole 64-row window.
      float* sx = reinterpret_cast<float*>(smem);
      unsigned char* sc1 = smem + kRowsIn * kColsX * 4;
      for (int i = tid; i < kRowsIn * kColsX; i += blockDim.x) {
        const int r = i / kColsX - 1, c = c0 - 2 + i % kColsX;
        sx[i] = r >= 0 && r < kHistoryRows && c >= 0 && c < width ? Pixel(im, newest, r, c) : 0.f;
      }
      __syncthreads();
      for (int p = tid; p < kRowsIn * kColsC1; p += blockDim.x)
        Conv1Pixel(sx, -1, c0, p / kColsC1 - 1, c0 - 1 + p % kColsC1, width, sw1, sc1, p);
      __syncthreads();
      const uint32_t c1_base = static_cast<uint32_t>(__cvta_generic_to_shared(sc1));
      for (int rr = 0; rr < kHistoryRows / kWarps; ++rr) {
        const int r = warp * (kHistoryRows / kWarps) + rr;
        float acc[4][4];
        Conv2Row(c1_base, r, lane, bfrag, acc);  // tile row r holds conv1 row r - 1
#pragma unroll
        for (int nt = 0; nt < 4; ++nt)
#pragma unroll
          for (int i = 0; i < 4; ++i) colfrag[nt][i] += fmaxf(acc[nt][i] + bias2[nt][i % 2], 0.f);
      }
    } else {
      // ---- Incremental path: warp s handles one edge segment of the old or new window.
      //   s = 0: old window, conv2 rows [0, 3), subtracted
      //   s = 1: new window, rows [0, 2), added
      //   s = 2: old window, rows [62, 64), subtracted
      //   s = 3: new window, rows [61, 64), added
      const int o0 = warp == 0 ? 0 : warp == 1 ? 0 : warp == 2 ? 62 : 61;
      const int o1 = warp == 0 ? 3 : warp == 1 ? 2 : 64;
      const float sign = warp % 2 == 0 ? -1.f : 1.f;
      const int win_newest = warp % 2 == 0 ? newest - 1 : newest;
      float* sx = reinterpret_cast<float*>(smem + warp * kSegSmem);
      unsigned char* sc1 = smem + warp * kSegSmem + kSegX * kColsX * 4;
      const int x_row0 = o0 - 2;  // window row of sx's first row
      for (int i = lane; i < kSegX * kColsX; i += 32) {
        const int r = x_row0 + i / kColsX, c = c0 - 2 + i % kColsX;
        sx[i] =
            r >= 0 && r < kHistoryRows && c >= 0 && c < width ? Pixel(im, win_newest, r, c) : 0.f;
      }
      __syncthreads();  // sw1 too
      for (int p = lane; p < kSegC1 * kColsC1; p += 32)
        Conv1Pixel(sx, x_row0, c0, o0 - 1 + p / kColsC1, c0 - 1 + p % kColsC1, width, sw1, sc1, p);
      __syncwarp();
      const uint32_t c1_base = static_cast<uint32_t>(__cvta_generic_to_shared(sc1));
      for (int o = o0; o < o1; ++o) {
        float acc[4][4];
        Conv2Row(c1_base, o - o0, lane, bfrag, acc);  // buffer row 0 holds conv1 row o0 - 1
#pragma unroll
        for (int nt = 0; nt < 4; ++nt)
#pragma unroll
          for (int i = 0; i < 4; ++i)
            colfrag[nt][i] += sign * fmaxf(acc[nt][i] + bias2[nt][i % 2], 0.f);
      }
    }

    __syncthreads();  // every warp is done with the conv1 tiles; reuse smem
    auto sred = reinterpret_cast<float(*)[kTileCols][kChannels2 + 1]>(smem);
    // Accumulator layout: [nt][0..1] -> column fg, channels nt*8 + 2ft + {0,1};
    //                     [nt][2..3] -> column fg + 8, same channels.
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      sred[warp][fg][nt * 8 + 2 * ft] = colfrag[nt][0];
      sred[warp][fg][nt * 8 + 2 * ft + 1] = colfrag[nt][1];
      sred[warp][fg + 8][nt * 8 + 2 * ft] = colfrag[nt][2];
      sred[warp][fg + 8][nt * 8 + 2 * ft + 1] = colfrag[nt][3];
    }
    __syncthreads();
    if (tid < kTileCols && c0 + tid < width) {
      float s = w[PredictorLayout::kConv3B];
#pragma unroll 8
      for (int ch = 0; ch < kChannels2; ++ch) {
        float t = 0.f;
#pragma unroll
        for (int wi = 0; wi < kWarps; ++wi) t += sred[wi][tid][ch];
        if (colsum != nullptr) {
          if (incremental) t += colsum[tid * kChannels2 + ch];
          colsum[tid * kChannels2 + ch] = t;
        }
        s = fmaf(w[PredictorLayout::kConv3W + ch], t * (1.0f / kHistoryRows), s);
      }
      a.scores[((static_cast<int64_t>(b) * a.num_layers + li) * a.num_kv_heads + g) * a.score_cols +
               c0 + tid] = s;
    }
  }  // tiles
}

// After the CNN: each image's state is now for this history count and width (or none).
__global__ void CommitStateKernel(const PredictorCnnArgs a) {
  const int b = blockIdx.y;
  const int li = a.layer_begin + blockIdx.x / a.num_kv_heads, g = blockIdx.x % a.num_kv_heads;
  const int len = a.next_lens[b];
  const int64_t img =
      (static_cast<int64_t>(a.seq_slots[b]) * a.num_layers + li) * a.num_kv_heads + g;
  const int count = a.history_count != nullptr ? a.history_count[b] : -1;
  const bool ok = NeedsPrediction(len, a.k_blocks) && count >= 0;
  a.state.count[img] = ok ? count : INT_MIN;
  a.state.width[img] = NumCandidates(len);
}

__global__ void PackFragmentsKernel(const float* w, uint2* out) {
  // Entry (tap, nt, lane) holds B[k = 2t, 2t+1][n = g] and B[k = 2t+8, 2t+9][n = g] of the
  // tap's [16 in][32 out] matrix, n-tile nt, g = lane / 4, t = lane % 4.
  for (int i = threadIdx.x; i < kPredictorFragments; i += blockDim.x) {
    const int tap = i / 128, nt = i / 32 % 4, l = i % 32, bg = l / 4, bt = l % 4;
    const float* w2 = w + PredictorLayout::kConv2W + (nt * 8 + bg) * kChannels1 * 9 + tap;
    out[i] = make_uint2(PackBf16(w2[(2 * bt) * 9], w2[(2 * bt + 1) * 9]),
                        PackBf16(w2[(2 * bt + 8) * 9], w2[(2 * bt + 9) * 9]));
  }
}

}  // namespace

cudaError_t LaunchPackPredictorFragments(const float* weights, uint2* fragments,
                                         cudaStream_t stream) {
  PackFragmentsKernel<<<1, 256, 0, stream>>>(weights, fragments);
  return cudaGetLastError();
}

cudaError_t LaunchPredictorCnn(PredictorCnnArgs a, cudaStream_t stream) {
  if (a.batch == 0 || a.num_layers == 0) return cudaSuccess;
  if (a.layer_count == 0) {
    a.layer_begin = 0;
    a.layer_count = a.num_layers;
  }
  if (a.fragments == nullptr || a.layer_begin + a.layer_count > a.num_layers)
    return cudaErrorInvalidValue;
  if (a.history.rows < kHistoryRows || a.max_cols > a.score_cols) return cudaErrorInvalidValue;
  if (a.state.colsum != nullptr && a.state.cols < a.score_cols) return cudaErrorInvalidValue;
  if (a.max_cols > 0) {
    static const cudaError_t attr = cudaFuncSetAttribute(
        PredictorCnnKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kDynSmem);
    if (attr != cudaSuccess) return attr;
    const dim3 grid(CeilDivInt(a.max_cols, kTileCols * kTilesPerCta),
                    a.layer_count * a.num_kv_heads, a.batch);
    PredictorCnnKernel<<<grid, kWarps * 32, kDynSmem, stream>>>(a);
    if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  if (a.state.colsum != nullptr) {
    CommitStateKernel<<<dim3(a.layer_count * a.num_kv_heads, a.batch), 1, 0, stream>>>(a);
    return cudaGetLastError();
  }
  return cudaSuccess;
}

}  // namespace apr::cuda
