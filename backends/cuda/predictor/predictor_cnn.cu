#include <climits>

#include "backends/cuda/block_rules.h"
#include "backends/cuda/device_utils.cuh"
#include "backends/cuda/predictor/predictor_cnn.h"

namespace apr::cuda {
namespace {

constexpr int kTileCols = 16;  // output columns per tile (one mma M tile)
constexpr int kWarps = 4;      // incremental path: a warp per tile; full path: 16 rows each
constexpr int kRowsIn = kHistoryRows + 2;  // full path: conv1 rows -1 .. 64
constexpr int kColsC1 = kTileCols + 2;     // conv1 cols c0 - 1 .. c0 + 16
constexpr int kColsX = kTileCols + 4;      // input cols c0 - 2 .. c0 + 17
constexpr int kChannels1 = 16;
// conv2 rows whose 5-row receptive field lies inside the window; their values depend only
// on the history rows, not on where the window starts (the incremental path's invariant).
constexpr int kInteriorFirst = 2, kInteriorLast = kHistoryRows - 3;
// Incremental path, per warp: 9 input rows (window rows 0..3 and 59..63) and a zero row;
// 8 conv1 rows (kIncC1From).
constexpr int kIncX = 10, kIncC1 = 8;
constexpr int kIncZeroRow = kIncX - 1;

constexpr int kFullSmem = kRowsIn * kColsX * 4 + kRowsIn * kColsC1 * 32;
// Per warp: two input tiles (the next tile's copy in flight while this one is computed)
// and the conv1 rows.
constexpr int kIncXBytes = kIncX * kColsX * 4;
constexpr int kIncSmem = 2 * kIncXBytes + kIncC1 * kColsC1 * 32;
static_assert(kIncXBytes % 16 == 0 && kIncSmem % 16 == 0);  // uint4 and ldmatrix rows
constexpr int kRedSmem = kWarps * kTileCols * 2 * 4;
constexpr int kSmem = kFullSmem > kWarps* kIncSmem ? kFullSmem : kWarps* kIncSmem;
static_assert(kRedSmem <= kRowsIn * kColsX * 4);  // the full path's input tile, reused
// conv2 weights as per-lane mma B fragments: [9 taps][4 n-tiles][32 lanes] x 2 registers.
constexpr int kBfragSmem = kPredictorFragments * 8;
constexpr int kDynSmem = kSmem + kBfragSmem;

// The incremental path's conv1 rows: the three input rows of its 10-row tile (rows 0..3
// are window rows 0..3, rows 4..8 window rows 59..63, row 9 zero) each is made from; row
// 0 is conv2's zero padding above the window, zeroed once per warp.
//   0: conv1 row -1 (zero)              3: row 2     6: row 62
//   1: conv1 row 0 (input row -1 = 0)   4: row 60    7: row 63 (input row 64 = 0)
//   2: row 1                            5: row 61
// clang-format off
__constant__ int8_t kIncC1From[kIncC1][3] = {
    {-1, -1, -1}, {kIncZeroRow, 0, 1}, {0, 1, 2}, {1, 2, 3},
    {4, 5, 6}, {5, 6, 7}, {6, 7, 8}, {7, 8, kIncZeroRow}};
// clang-format on

// The incremental path's conv2 rows, from the conv1 buffer rows above, at and below each:
// edge row 63 alone, whose tap row below (conv1 row 64) is padding and left out (made first:
// after the pairs it spilled registers), then two pairs that share the B fragments, (edge
// rows 0 and 1) and (the entering interior row 61, edge row 62).
constexpr int kIncConv2Pairs = 2, kIncEnteringPair = 1;
// clang-format off
__constant__ int8_t kIncConv2From[kIncConv2Pairs][2][3] = {
    {{0, 1, 2}, {1, 2, 3}}, {{4, 5, 6}, {5, 6, 7}}};
// clang-format on

// conv1 outputs as [row][col][16 channels] bf16, 32 bytes per pixel; the two 16-byte
// halves are swapped on every other group of 4 pixels, so that ldmatrix's 8 row reads
// (8 consecutive pixels, same half) hit 8 distinct bank groups.
__device__ __forceinline__ int C1Offset(int pixel, int half) {
  return pixel * 32 + ((half ^ ((pixel >> 2) & 1)) * 16);
}

struct Image {
  const float* data;  // the image's ring [rows][cols]
  int ring, cols;
  int width;  // candidate columns
};

// The ring row of window row r (0 = oldest of the 64) of the window whose newest ring row
// is `newest`. newest < ring, 0 <= r <= 63 and ring >= 64 keep it in [-ring, ring).
__device__ __forceinline__ int RingRow(int ring, int newest, int r) {
  const int ring_row = newest - (kHistoryRows - 1) + r;
  return ring_row < 0 ? ring_row + ring : ring_row;
}
__device__ __forceinline__ const float* WindowRow(const Image& im, int newest, int r) {
  return im.data + static_cast<int64_t>(RingRow(im.ring, newest, r)) * im.cols + kSinkBlocks;
}
__device__ __forceinline__ float Pixel(const Image& im, int newest, int r, int c) {
  return WindowRow(im, newest, r)[c];
}

// Starts copying the incremental path's input tile for the column tile at c0 into sx
// (kIncX rows of kColsX floats, columns c0 - 2 ..): window rows 0..3 and 59..63; zero
// outside the candidate columns. A row per step, a lane per column. The last row (zero)
// is left alone.
__device__ __forceinline__ void StartIncInput(const Image& im, int newest, int c0, float* sx,
                                              int lane) {
  if (lane < kColsX) {
    const int c = c0 - 2 + lane;
    const bool in = c >= 0 && c < im.width;
#pragma unroll 1
    for (int xr = 0; xr < kIncZeroRow; ++xr) {
      const int r = xr < 4 ? xr : xr + kHistoryRows - 9;
      CpAsync4(sx + xr * kColsX + lane, in ? WindowRow(im, newest, r) + c : im.data, in ? 4 : 0);
    }
  }
  CpAsyncCommit();
}

// conv1 + ReLU of one pixel from three input rows (kColsX floats each, columns from
// c0 - 2) at tile column x (the pixel's column - (c0 - 2)) into 16 bf16 channels at the
// swizzled location; zero when `zero` (conv2's padding).
__device__ __forceinline__ void Conv1Pixel(const float* x0, const float* x1, const float* x2, int x,
                                           bool zero, const PredictorConv1& w1, unsigned char* c1,
                                           int pixel) {
  float out[kChannels1];
  if (!zero) {
    const float win[9] = {x0[x - 1], x0[x],     x0[x + 1], x1[x - 1], x1[x],
                          x1[x + 1], x2[x - 1], x2[x],     x2[x + 1]};
#pragma unroll
    for (int oc = 0; oc < kChannels1; ++oc) {
      float acc = w1.b[oc];
#pragma unroll
      for (int t = 0; t < 9; ++t) acc = fmaf(w1.w[oc * 9 + t], win[t], acc);
      out[oc] = fmaxf(acc, 0.f);
    }
  } else {
#pragma unroll
    for (int oc = 0; oc < kChannels1; ++oc) out[oc] = 0.f;
  }
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    uint4 v;
    v.x = PackBf16x2(out[half * 8 + 0], out[half * 8 + 1]);
    v.y = PackBf16x2(out[half * 8 + 2], out[half * 8 + 3]);
    v.z = PackBf16x2(out[half * 8 + 4], out[half * 8 + 5]);
    v.w = PackBf16x2(out[half * 8 + 6], out[half * 8 + 7]);
    *reinterpret_cast<uint4*>(c1 + C1Offset(pixel, half)) = v;
  }
}

// conv2 pre-activations of N output rows for the tile's 16 columns: row n from the conv1
// rows rows[n][0..2] (above, at and below it) of the buffer at c1_base (shared address).
// The rows share each tap's B fragments. Bit 3 n + ky of kSkip set: row n's tap row ky is
// zero padding, left out (its rows entry is not read). The mask is a template argument: a
// run-time one put branches between the ldmatrix and mma instructions, and the predictor
// overlapped with the step cost about 45% more at 128K batch 1 (docs/PERFORMANCE.md).
template <int N, unsigned kSkip = 0>
__device__ __forceinline__ void Conv2Rows(uint32_t c1_base, const int (&rows)[N][3], int lane,
                                          const uint2* bfrag, float (&acc)[N][4][4]) {
  const int a_m = lane % 8 + 8 * ((lane / 8) % 2), a_half = lane / 16;
#pragma unroll
  for (int n = 0; n < N; ++n)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[n][nt][i] = 0.f;
#pragma unroll
  for (int ky = 0; ky < 3; ++ky) {
#pragma unroll
    for (int kx = 0; kx < 3; ++kx) {
      uint2 bf[4];
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) bf[nt] = bfrag[((ky * 3 + kx) * 4 + nt) * 32 + lane];
#pragma unroll
      for (int n = 0; n < N; ++n) {
        if ((kSkip >> (3 * n + ky)) & 1u) continue;
        // Output pixel (row, c0 + m) reads conv1 at (row + ky - 1, c0 + m + kx - 1).
        const int pixel = rows[n][ky] * kColsC1 + a_m + kx;
        uint32_t af[4];
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                     : "=r"(af[0]), "=r"(af[1]), "=r"(af[2]), "=r"(af[3])
                     : "r"(c1_base + C1Offset(pixel, a_half)));
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) Mma16816(acc[n][nt], af, bf[nt].x, bf[nt].y);
      }
    }
  }
}

// The kernel-1 conv1d is linear, so a conv2 row enters a column's score only through
// sum_ch w3[ch] * ReLU(conv2[ch] + b2[ch]). Adds that (times `sign`) for this lane's two
// columns (fg and fg + 8; its 8 of the 32 channels) to lo and hi.
struct RowWeights {
  float b2[4][2], w3[4][2];
};
__device__ __forceinline__ void AddWeightedRow(const float (&acc)[4][4], const RowWeights& rw,
                                               float sign, float& lo, float& hi) {
#pragma unroll
  for (int nt = 0; nt < 4; ++nt)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      lo = fmaf(sign * rw.w3[nt][j], fmaxf(acc[nt][j] + rw.b2[nt][j], 0.f), lo);
      hi = fmaf(sign * rw.w3[nt][j], fmaxf(acc[nt][2 + j] + rw.b2[nt][j], 0.f), hi);
    }
}

// Sums over the 4 lanes that share a column (lane = 4 * column + channel group).
__device__ __forceinline__ float SumOverChannelLanes(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  v += __shfl_xor_sync(0xffffffffu, v, 2);
  return v;
}

// One CTA's image, state and output, and its shared-memory fragments of conv2's weights:
// what both paths of PredictorCnnKernel read.
struct CnnCta {
  const PredictorCnnArgs& a;
  Image im;
  int width, tiles, first_c0, tid, lane, warp, fg, ft, newest, state_width;
  bool state_fresh;
  float* interior;
  float* row_r;  // R of the interior rows, [ring row][column] (CnnState::row_r)
  float* scores;
  float b3;
  const uint2* bfrag;
  RowWeights rw;

  // The incremental path needs the state's columns and two to their right unchanged (a
  // column's receptive field is 5 wide). Columns past the width are zero padding, so with
  // the width unchanged every tile qualifies; when it grew, the tiles whose receptive field
  // reaches the old edge (where padding became history) take the full path.
  __device__ __forceinline__ bool incremental(int c0) const {
    return state_fresh && (width == state_width || c0 + kTileCols <= state_width - 2);
  }
  __device__ __forceinline__ bool takes_incremental(int tile) const {
    const int c0 = first_c0 + tile * kTileCols;
    return tile < tiles && c0 < width && incremental(c0);
  }
};

// The CTA's image, state, output and conv2/conv3 weights (the fragments copied to shared
// memory; the caller waits for them). False: the CTA has nothing to predict.
__device__ __forceinline__ bool LoadCnnCta(const PredictorCnnArgs& a, uint2* sbfrag, CnnCta& t) {
  const int b = blockIdx.z;
  const int li = a.layer_begin + blockIdx.y / a.num_kv_heads, g = blockIdx.y % a.num_kv_heads;
  const int len = a.next_lens[b];
  if (!NeedsPrediction(len, a.k_blocks)) return false;
  t.width = NumCandidates(len);
  t.tiles = a.tiles_per_cta;
  t.first_c0 = blockIdx.x * t.tiles * kTileCols;
  if (t.first_c0 >= t.width) return false;
  t.tid = threadIdx.x;
  t.lane = t.tid % 32;
  t.warp = t.tid / 32;
  const float* w = a.weights;
  const HistoryView& h = a.history;
  const int slot = a.seq_slots[b];
  t.im = Image{
      h.data + ((static_cast<int64_t>(slot) * h.layers + a.first_layer + li) * h.kv_heads + g) *
                   h.rows * h.cols,
      h.rows, h.cols, t.width};
  t.newest = a.history_row[b];
  const int64_t state_img = (static_cast<int64_t>(slot) * a.num_layers + li) * a.num_kv_heads + g;
  const int count = a.history_count != nullptr ? a.history_count[b] : -1;
  t.state_fresh = a.state.interior != nullptr && !CnnRecomputes(count) &&
                  a.state.count[state_img] >= 0 && a.state.count[state_img] == count - 1;
  t.state_width = a.state.interior != nullptr ? a.state.width[state_img] : 0;
  t.interior = a.state.interior != nullptr ? a.state.interior + state_img * a.state.cols : nullptr;
  t.row_r = a.state.interior != nullptr
                ? a.state.row_r + state_img * h.rows * static_cast<int64_t>(a.state.cols)
                : nullptr;
  t.scores = a.scores +
             ((static_cast<int64_t>(b) * a.num_layers + li) * a.num_kv_heads + g) * a.score_cols;
  t.b3 = w[PredictorLayout::kConv3B];
  for (int i = t.tid; i < kBfragSmem / 16; i += blockDim.x)
    reinterpret_cast<uint4*>(sbfrag)[i] = reinterpret_cast<const uint4*>(a.fragments)[i];
  t.fg = t.lane / 4;
  t.ft = t.lane % 4;
  t.bfrag = sbfrag;
#pragma unroll
  for (int nt = 0; nt < 4; ++nt)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      t.rw.b2[nt][j] = w[PredictorLayout::kConv2B + nt * 8 + 2 * t.ft + j];
      t.rw.w3[nt][j] = w[PredictorLayout::kConv3W + nt * 8 + 2 * t.ft + j];
    }
  return true;
}

// conv2 and conv3 of the incremental tile at c0, from its 8 conv1 rows in sc1: the
// entering row's R (r_lo, r_hi) and the edge rows' sum (e_lo, e_hi), summed over the
// channel lanes.
__device__ __forceinline__ void IncrementalRows(const CnnCta& t, unsigned char* sc1, float& r_lo,
                                                float& r_hi, float& e_lo, float& e_hi) {
  const uint32_t c1_base = static_cast<uint32_t>(__cvta_generic_to_shared(sc1));
  {
    const int rows[1][3] = {{6, 7, 7}};
    float acc[1][4][4];
    Conv2Rows<1, 0b100>(c1_base, rows, t.lane, t.bfrag, acc);
    AddWeightedRow(acc[0], t.rw, 1.f, e_lo, e_hi);
  }
#pragma unroll 1
  for (int k = 0; k < kIncConv2Pairs; ++k) {
    int rows[2][3];
#pragma unroll
    for (int n = 0; n < 2; ++n)
#pragma unroll
      for (int ky = 0; ky < 3; ++ky) rows[n][ky] = kIncConv2From[k][n][ky];
    float acc[2][4][4];
    Conv2Rows(c1_base, rows, t.lane, t.bfrag, acc);
    float lo = 0.f, hi = 0.f;
    AddWeightedRow(acc[0], t.rw, 1.f, lo, hi);
    if (k == kIncEnteringPair) {
      r_lo = lo;
      r_hi = hi;
    } else {
      e_lo += lo;
      e_hi += hi;
    }
    AddWeightedRow(acc[1], t.rw, 1.f, e_lo, e_hi);
  }
  r_lo = SumOverChannelLanes(r_lo);
  r_hi = SumOverChannelLanes(r_hi);
  e_lo = SumOverChannelLanes(e_lo);
  e_hi = SumOverChannelLanes(e_hi);
}

// ---- Incremental path: warp w takes tiles w, w + 4, ..., with no block-wide barrier.
// The window moved by one row: the interior sum I (rows 2..61) loses the old window's
// row 2 (the new window's row 1; its R is in row_r since it entered) and gains the new
// row 61, whose R is stored for when it leaves; the edge rows 0, 1, 62, 63 (padding in
// their receptive field) are recomputed for the score. 5 conv2 rows.
// The incremental tiles are a prefix of the warp's tiles; each one's input is copied
// while the one before it is computed.
__device__ __forceinline__ void IncrementalTiles(const CnnCta& t, unsigned char* smem) {
  const PredictorCnnArgs& a = t.a;
  const HistoryView& h = a.history;
  unsigned char* const warp_smem = smem + t.warp * kIncSmem;
  unsigned char* const sc1 = warp_smem + 2 * kIncXBytes;
  const int leave_row = RingRow(h.rows, t.newest, 1), enter_row = RingRow(h.rows, t.newest, 61);
  if (t.takes_incremental(t.warp)) {
    for (int i = t.lane; i < kColsX; i += 32)  // both input buffers' zero row, for good
      for (int buf = 0; buf < 2; ++buf)
        reinterpret_cast<float*>(warp_smem + buf * kIncXBytes)[kIncZeroRow * kColsX + i] = 0.f;
    for (int q = t.lane; q < kColsC1 * 2; q += 32)  // conv1 row 0 (padding), zero for good
      *reinterpret_cast<uint4*>(sc1 + C1Offset(q / 2, q % 2)) = make_uint4(0, 0, 0, 0);
    StartIncInput(t.im, t.newest, t.first_c0 + t.warp * kTileCols,
                  reinterpret_cast<float*>(warp_smem), t.lane);
  }
  for (int tile = t.warp, buf = 0; t.takes_incremental(tile); tile += kWarps, buf ^= 1) {
    const int c0 = t.first_c0 + tile * kTileCols;
    // Lanes 4 fg and 4 fg + 1 finish columns c0 + fg and c0 + fg + 8; their state reads
    // start now, to land during the tile's arithmetic.
    const int col = c0 + t.fg + 8 * t.ft;
    const bool finishes = t.ft < 2 && col < t.width;
    const float interior_old = finishes ? t.interior[col] : 0.f;
    const float r_left = finishes ? t.row_r[int64_t{leave_row} * a.state.cols + col] : 0.f;
    __syncwarp();  // the warp's previous tile is done with its shared memory
    float* sx = reinterpret_cast<float*>(warp_smem + buf * kIncXBytes);
    if (t.takes_incremental(tile + kWarps)) {
      StartIncInput(t.im, t.newest, c0 + kWarps * kTileCols,
                    reinterpret_cast<float*>(warp_smem + (buf ^ 1) * kIncXBytes), t.lane);
      CpAsyncWait<1>();  // this tile's copy has landed, the next one's may not have
    } else {
      CpAsyncWait<0>();
    }
    __syncwarp();
    for (int p = kColsC1 + t.lane; p < kIncC1 * kColsC1; p += 32) {  // rows 1..7
      const int j = p / kColsC1, x = p % kColsC1 + 1, c = c0 - 1 + p % kColsC1;
      const int8_t* from = kIncC1From[j];
      const bool zero = c < 0 || c >= t.width;
      Conv1Pixel(sx + from[0] * kColsX, sx + from[1] * kColsX, sx + from[2] * kColsX, x, zero,
                 a.conv1, sc1, p);
    }
    __syncwarp();
    float r_lo = 0.f, r_hi = 0.f, e_lo = 0.f, e_hi = 0.f;
    IncrementalRows(t, sc1, r_lo, r_hi, e_lo, e_hi);
    if (finishes) {  // lane 4 fg + 0: column fg; lane 4 fg + 1: column fg + 8
      const float r_entered = t.ft == 0 ? r_lo : r_hi;
      // The difference first: where the two rows' R are equal (e.g. all-zero history),
      // I stays bit-exact, and so do the ties between such columns.
      const float in = interior_old + (r_entered - r_left);
      t.interior[col] = in;
      t.row_r[int64_t{enter_row} * a.state.cols + col] = r_entered;
      t.scores[col] = fmaf(in + (t.ft == 0 ? e_lo : e_hi), 1.0f / kHistoryRows, t.b3);
    }
  }
}

// The full path's conv2 and conv3 over this warp's 16 rows of the tile at c0 (conv1 in
// shared memory): the interior rows' sum (each row's R stored at its ring row when there
// is a state) and the edge rows' sum, both summed over the channel lanes.
__device__ __forceinline__ void FullTileRows(const CnnCta& t, uint32_t c1_base, int col,
                                             float& i_lo, float& i_hi, float& e_lo, float& e_hi) {
  const HistoryView& h = t.a.history;
  const bool stores_r = t.row_r != nullptr && t.ft < 2 && col < t.width;
  for (int rr = 0; rr < kHistoryRows / kWarps; rr += 2) {
    const int r = t.warp * (kHistoryRows / kWarps) + rr;
    const int rows[2][3] = {{r, r + 1, r + 2}, {r + 1, r + 2, r + 3}};
    float acc[2][4][4];
    Conv2Rows(c1_base, rows, t.lane, t.bfrag, acc);
#pragma unroll
    for (int n = 0; n < 2; ++n) {
      if (r + n >= kInteriorFirst && r + n <= kInteriorLast) {  // warp-uniform
        float v_lo = 0.f, v_hi = 0.f;
        AddWeightedRow(acc[n], t.rw, 1.f, v_lo, v_hi);
        v_lo = SumOverChannelLanes(v_lo);
        v_hi = SumOverChannelLanes(v_hi);
        i_lo += v_lo;
        i_hi += v_hi;
        if (stores_r)
          t.row_r[int64_t{RingRow(h.rows, t.newest, r + n)} * t.a.state.cols + col] =
              t.ft == 0 ? v_lo : v_hi;
      } else {
        AddWeightedRow(acc[n], t.rw, 1.f, e_lo, e_hi);
      }
    }
  }
  e_lo = SumOverChannelLanes(e_lo);
  e_hi = SumOverChannelLanes(e_hi);
}

// ---- Full path for one tile: the whole 64-row window, 16 rows per warp. Every thread of
// the CTA calls it (its barriers are the CTA's).
__device__ __forceinline__ void FullTile(const CnnCta& t, unsigned char* smem, int c0) {
  __syncthreads();  // shared memory is free (the incremental warps or the last tile)
  float* sx = reinterpret_cast<float*>(smem);
  unsigned char* sc1 = smem + kRowsIn * kColsX * 4;
  for (int i = t.tid; i < kRowsIn * kColsX; i += blockDim.x) {
    const int r = i / kColsX - 1, c = c0 - 2 + i % kColsX;
    sx[i] = r >= 0 && r < kHistoryRows && c >= 0 && c < t.width ? Pixel(t.im, t.newest, r, c) : 0.f;
  }
  __syncthreads();
  // Tile row t holds conv1 row t - 1 (rows -1 and 64 zero) from input rows t - 2 .. t.
  for (int p = t.tid; p < kRowsIn * kColsC1; p += blockDim.x) {
    const int tr = p / kColsC1, x = p % kColsC1 + 1, c = c0 - 1 + p % kColsC1;
    const bool zero = tr == 0 || tr == kRowsIn - 1 || c < 0 || c >= t.width;
    const float* x1 = sx + (zero ? 1 : tr) * kColsX;
    Conv1Pixel(x1 - kColsX, x1, x1 + kColsX, x, zero, t.a.conv1, sc1, p);
  }
  __syncthreads();
  const uint32_t c1_base = static_cast<uint32_t>(__cvta_generic_to_shared(sc1));
  // Interior rows are summed over the channel lanes row by row: with a state, each one's
  // R is stored at its ring row for the incremental path to take it out later.
  const int col = c0 + t.fg + 8 * t.ft;
  float i_lo = 0.f, i_hi = 0.f, e_lo = 0.f, e_hi = 0.f;
  FullTileRows(t, c1_base, col, i_lo, i_hi, e_lo, e_hi);
  __syncthreads();  // every warp is done with the input tile; reuse it
  auto sred = reinterpret_cast<float(*)[kTileCols][2]>(smem);
  if (t.ft < 2) {
    sred[t.warp][t.fg + 8 * t.ft][0] = t.ft == 0 ? i_lo : i_hi;
    sred[t.warp][t.fg + 8 * t.ft][1] = t.ft == 0 ? e_lo : e_hi;
  }
  __syncthreads();
  if (t.tid < kTileCols && c0 + t.tid < t.width) {
    float in = 0.f, edge = 0.f;
#pragma unroll
    for (int wi = 0; wi < kWarps; ++wi) {
      in += sred[wi][t.tid][0];
      edge += sred[wi][t.tid][1];
    }
    if (t.interior != nullptr) t.interior[c0 + t.tid] = in;
    t.scores[c0 + t.tid] = fmaf(in + edge, 1.0f / kHistoryRows, t.b3);
  }
}

__global__ void __launch_bounds__(kWarps * 32, 4)
    PredictorCnnKernel(const __grid_constant__ PredictorCnnArgs a) {
  extern __shared__ __align__(128) unsigned char smem[];
  uint2* sbfrag = reinterpret_cast<uint2*>(smem + kSmem);
  CnnCta t{a};
  if (!LoadCnnCta(a, sbfrag, t)) return;
  __syncthreads();  // sbfrag
  IncrementalTiles(t, smem);
  // The CTA's other tiles take the full path.
  for (int tile = 0; tile < t.tiles; ++tile) {
    const int c0 = t.first_c0 + tile * kTileCols;
    if (c0 >= t.width) break;
    if (t.incremental(c0)) continue;
    FullTile(t, smem, c0);
  }
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
    out[i] = make_uint2(PackBf16x2(w2[(2 * bt) * 9], w2[(2 * bt + 1) * 9]),
                        PackBf16x2(w2[(2 * bt + 8) * 9], w2[(2 * bt + 9) * 9]));
  }
}

}  // namespace

PredictorConv1 MakePredictorConv1(const float* host_weights) {
  PredictorConv1 c;
  for (int i = 0; i < kChannels1 * 9; ++i) c.w[i] = host_weights[PredictorLayout::kConv1W + i];
  for (int i = 0; i < kChannels1; ++i) c.b[i] = host_weights[PredictorLayout::kConv1B + i];
  c.loaded = true;
  return c;
}

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
  if (a.tiles_per_cta == 0) a.tiles_per_cta = kDefaultCnnTilesPerCta;
  if (a.fragments == nullptr || !a.conv1.loaded || a.layer_begin + a.layer_count > a.num_layers ||
      !ValidCnnTilesPerCta(a.tiles_per_cta))
    return cudaErrorInvalidValue;
  if (a.history.rows < kHistoryRows || a.max_cols > a.score_cols) return cudaErrorInvalidValue;
  if (a.state.interior != nullptr && (a.state.row_r == nullptr || a.state.cols < a.score_cols))
    return cudaErrorInvalidValue;
  if (a.max_cols > 0) {
    static const cudaError_t attr = cudaFuncSetAttribute(
        PredictorCnnKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kDynSmem);
    if (attr != cudaSuccess) return attr;
    const dim3 grid(CeilDivInt(a.max_cols, kTileCols * a.tiles_per_cta),
                    a.layer_count * a.num_kv_heads, a.batch);
    PredictorCnnKernel<<<grid, kWarps * 32, kDynSmem, stream>>>(a);
    if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  if (a.state.interior != nullptr) {
    CommitStateKernel<<<dim3(a.layer_count * a.num_kv_heads, a.batch), 1, 0, stream>>>(a);
    return cudaGetLastError();
  }
  return cudaSuccess;
}

}  // namespace apr::cuda
