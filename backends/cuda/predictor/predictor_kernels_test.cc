// The GPU predictor's kernels against C++ references on random inputs: the CNN (every
// image, and incremental steps against full recomputation), top-k selection (ties, NaN,
// negative zero, small images) and the block lists built from a selection. Part of
// //backends/cuda:kernels_test (kernels_test.cc has the other kernels).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <vector>

#include "backends/cuda/block_rules.h"
#include "backends/cuda/kv_pool_fixture.h"
#include "backends/cuda/paged_decode_attention.h"
#include "backends/cuda/predictor/predictor_cnn.h"
#include "backends/cuda/predictor/predictor_weights.h"
#include "backends/cuda/predictor/topk_select.h"
#include "backends/cuda/test_util.h"

namespace apr::cuda {
namespace {

using testing::Dev;
using testing::kBf16Tol;
using testing::PoolFixture;
using testing::RelErr;
using testing::Uniform;

// ---------------------------------------------------------------- predictor

// The CNN of docs/DESIGN.md section 2 in double, on one [64][width] image.
std::vector<double> CnnReference(const std::vector<float>& w, const std::vector<float>& img,
                                 int width) {
  auto at = [&](int r, int c) -> double {
    return r < 0 || r >= 64 || c < 0 || c >= width ? 0.0 : img[size_t(r) * width + c];
  };
  std::vector<double> c1(size_t(16) * 64 * width);
  for (int oc = 0; oc < 16; ++oc)
    for (int r = 0; r < 64; ++r)
      for (int c = 0; c < width; ++c) {
        double s = w[PredictorLayout::kConv1B + oc];
        for (int dy = 0; dy < 3; ++dy)
          for (int dx = 0; dx < 3; ++dx) s += w[oc * 9 + dy * 3 + dx] * at(r + dy - 1, c + dx - 1);
        c1[(size_t(oc) * 64 + r) * width + c] = std::max(s, 0.0);
      }
  auto c1at = [&](int ic, int r, int c) -> double {
    return r < 0 || r >= 64 || c < 0 || c >= width ? 0.0 : c1[(size_t(ic) * 64 + r) * width + c];
  };
  std::vector<double> score(width);
  for (int c = 0; c < width; ++c) {
    double s = w[PredictorLayout::kConv3B];
    for (int oc = 0; oc < 32; ++oc) {
      double mean = 0;
      for (int r = 0; r < 64; ++r) {
        double v = w[PredictorLayout::kConv2B + oc];
        for (int ic = 0; ic < 16; ++ic)
          for (int dy = 0; dy < 3; ++dy)
            for (int dx = 0; dx < 3; ++dx)
              v += w[PredictorLayout::kConv2W + (oc * 16 + ic) * 9 + dy * 3 + dx] *
                   c1at(ic, r + dy - 1, c + dx - 1);
        mean += std::max(v, 0.0);
      }
      s += w[PredictorLayout::kConv3W + oc] * mean / 64;
    }
    score[c] = s;
  }
  return score;
}

TEST(PredictorCnn, MatchesReferenceOnEveryImage) {
  std::mt19937_64 rng(7);
  const std::vector<float> w = RandomPredictorWeights(11);
  const int layers = 3, first = 1, nl = 2, nkv = 2, cols = 120, k = 8, ring = kHistoryRing;
  const std::vector<int32_t> next_lens = {1000, 150, 1921};  // 150: 1 candidate, no CNN
  const std::vector<int32_t> seq_slots = {2, 0, 1}, hist_row = {17, 63, 0};
  const int batch = 3;
  // Sparse-looking history: most entries zero, some large.
  std::vector<float> hist(size_t(3) * layers * nkv * ring * cols);
  std::uniform_real_distribution<float> u(0, 1);
  for (float& v : hist) v = u(rng) < 0.7f ? 0.f : u(rng);
  Dev<float> dw(w), dhist(hist);
  Dev<uint2> frag(kPredictorFragments);
  ASSERT_CUDA(LaunchPackPredictorFragments(dw.get(), frag.get(), nullptr));
  Dev<int32_t> dlens(next_lens), dslots(seq_slots), drow(hist_row);
  Dev<float> scores(size_t(batch) * nl * nkv * cols);
  scores.Poison();
  PredictorCnnArgs a;
  a.weights = dw.get();
  a.fragments = frag.get();
  a.conv1 = MakePredictorConv1(w.data());
  a.batch = batch;
  a.first_layer = first;
  a.num_layers = nl;
  a.num_kv_heads = nkv;
  a.next_lens = dlens.get();
  a.seq_slots = dslots.get();
  a.history_row = drow.get();
  a.history = HistoryView{dhist.get(), layers, nkv, ring, cols};
  a.k_blocks = k;
  a.max_cols = cols;
  a.scores = scores.get();
  a.score_cols = cols;
  ASSERT_CUDA(LaunchPredictorCnn(a, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  const std::vector<float> got = scores.Host();
  for (int b = 0; b < batch; ++b) {
    const int width = NumCandidates(next_lens[b]);
    for (int li = 0; li < nl; ++li)
      for (int g = 0; g < nkv; ++g) {
        const float* out = &got[((size_t(b) * nl + li) * nkv + g) * cols];
        if (!NeedsPrediction(next_lens[b], k)) {
          EXPECT_TRUE(std::isnan(out[0])) << "image without prediction was written";
          continue;
        }
        std::vector<float> img(size_t(64) * width);
        const float* src =
            &hist[(((size_t(seq_slots[b]) * layers + first + li) * nkv + g) * ring) * cols];
        for (int r = 0; r < 64; ++r)
          for (int c = 0; c < width; ++c)
            img[size_t(r) * width + c] =
                src[size_t(((hist_row[b] - 63 + r) % ring + ring) % ring) * cols + 4 + c];
        const std::vector<double> ref = CnnReference(w, img, width);
        EXPECT_LE(RelErr(out, ref.data(), width), kBf16Tol) << "b " << b << " layer " << li;
      }
  }
}

// Several decode steps of one sequence: each appends a history row (and now and then a
// candidate column); the incremental path must give the scores of a full recomputation.
TEST(PredictorCnn, IncrementalStepsMatchFullRecomputation) {
  std::mt19937_64 rng(17);
  const std::vector<float> w = RandomPredictorWeights(12);
  const int layers = 2, first = 0, nl = 2, nkv = 2, cols = 200, k = 8, ring = kHistoryRing;
  const int slot = 1, slots = 2;
  std::vector<float> hist(size_t(slots) * layers * nkv * ring * cols);
  std::uniform_real_distribution<float> u(0, 1);
  for (float& v : hist) v = u(rng) < 0.6f ? 0.f : u(rng);
  Dev<float> dw(w), dhist(hist);
  Dev<uint2> frag(kPredictorFragments);
  ASSERT_CUDA(LaunchPackPredictorFragments(dw.get(), frag.get(), nullptr));
  Dev<float> interior(size_t(slots) * nl * nkv * cols);
  Dev<float> row_r(size_t(slots) * nl * nkv * ring * cols);
  Dev<int32_t> count(size_t(slots) * nl * nkv), width(size_t(slots) * nl * nkv);
  ASSERT_CUDA(cudaMemset(count.get(), 0x80, count.size() * 4));
  Dev<float> scores(size_t(nl) * nkv * cols), full(size_t(nl) * nkv * cols);
  // Lengths: crossing a block boundary of the local window (width + 1) at step 4 and every
  // 16th step after; 80 steps, so rows enter the window's interior and leave it again; the
  // history count passes kCnnRefreshSteps (a full refresh) at step 6.
  int len = 64 + 16 * 100 - 3, newest = 70, hcount = kCnnRefreshSteps - 6;
  for (int step = 0; step < 80; ++step) {
    if (step > 0) {
      // Append a row: the new newest ring row gets fresh values.
      newest = (newest + 1) % ring;
      ++hcount;
      ++len;
      for (int li = 0; li < nl; ++li)
        for (int g = 0; g < nkv; ++g) {
          float* row =
              &hist[((((size_t(slot) * layers + first + li) * nkv + g) * ring) + newest) * cols];
          for (int c = 0; c < cols; ++c) row[c] = u(rng) < 0.5f ? 0.f : u(rng);
        }
      ASSERT_CUDA(cudaMemcpy(dhist.get(), hist.data(), hist.size() * 4, cudaMemcpyHostToDevice));
    }
    Dev<int32_t> dlens(std::vector<int32_t>{len + 1}), dslots(std::vector<int32_t>{slot}),
        drow(std::vector<int32_t>{newest}), dcount(std::vector<int32_t>{hcount});
    PredictorCnnArgs a;
    a.weights = dw.get();
    a.fragments = frag.get();
    a.conv1 = MakePredictorConv1(w.data());
    a.batch = 1;
    a.first_layer = first;
    a.num_layers = nl;
    a.num_kv_heads = nkv;
    a.next_lens = dlens.get();
    a.seq_slots = dslots.get();
    a.history_row = drow.get();
    a.history = HistoryView{dhist.get(), layers, nkv, ring, cols};
    a.k_blocks = k;
    a.max_cols = cols;
    a.score_cols = cols;
    a.scores = full.get();
    full.Poison();
    // Launch shapes: CTAs of 4, 16 or 32 (the default) column tiles.
    a.tiles_per_cta = step % 3 == 1 ? 16 : 0;
    ASSERT_CUDA(LaunchPredictorCnn(a, nullptr));  // no state: always the full path
    a.tiles_per_cta = step % 3 == 2 ? 4 : 0;
    a.state = CnnState{interior.get(), row_r.get(), count.get(), width.get(), cols};
    a.history_count = dcount.get();
    a.scores = scores.get();
    scores.Poison();
    // Probe that the incremental path runs and builds on the state: shift image 0's
    // interior sums by 64, so its incremental columns' scores move by exactly 1 (the rest
    // must not). Step 40 keeps the width (every column incremental); step 52 grows it (the
    // tiles that reach the old edge recomputed). Step 70 shifts instead the kept R of the
    // row that leaves the interior (the new window's row 1, which entered it as row 61 at
    // step 10, incrementally): the scores move by -1.
    const bool probe = step == 40 || step == 52 || step == 70;
    const bool probe_row_r = step == 70;
    const size_t img0 = size_t(slot) * nl * nkv * cols;
    if (probe && !probe_row_r) {
      std::vector<float> st = interior.Host();
      for (int c = 0; c < cols; ++c) st[img0 + c] += 64.f;
      ASSERT_CUDA(cudaMemcpy(interior.get(), st.data(), st.size() * 4, cudaMemcpyHostToDevice));
    }
    if (probe_row_r) {
      std::vector<float> rr = row_r.Host();
      const size_t leaving = ((newest - 62) % ring + ring) % ring;
      for (int c = 0; c < cols; ++c) rr[(img0 * ring) + leaving * cols + c] += 64.f;
      ASSERT_CUDA(cudaMemcpy(row_r.get(), rr.data(), rr.size() * 4, cudaMemcpyHostToDevice));
    }
    const int prev_width = NumCandidates(len);
    if (step % 2 == 1) {  // one launch per layer, as the decoder's overlapped predictor does
      for (int li = nl - 1; li >= 0; --li) {
        a.layer_begin = li;
        a.layer_count = 1;
        ASSERT_CUDA(LaunchPredictorCnn(a, nullptr));
      }
    } else {
      ASSERT_CUDA(LaunchPredictorCnn(a, nullptr));
    }
    ASSERT_CUDA(cudaDeviceSynchronize());
    const std::vector<float> got = scores.Host(), want = full.Host();
    const int wd = NumCandidates(len + 1);
    // The incremental path's scores against the full path's on every step, against the CPU
    // reference (slow) on some.
    const bool check_reference = step % 8 == 0 || step == 41 || step == 53;
    for (int li = 0; li < nl; ++li)
      for (int g = 0; g < nkv; ++g) {
        if (probe && li == 0 && g == 0) continue;  // checked below
        const size_t o = (size_t(li) * nkv + g) * cols;
        std::vector<float> gv(got.begin() + o, got.begin() + o + wd);
        std::vector<float> wv(want.begin() + o, want.begin() + o + wd);
        EXPECT_LE(RelErr(gv, wv), 1e-5) << "step " << step << " layer " << li << " head " << g;
        if (!check_reference) continue;
        std::vector<float> img(size_t(64) * wd);
        const float* src = &hist[(((size_t(slot) * layers + first + li) * nkv + g) * ring) * cols];
        for (int r = 0; r < 64; ++r)
          for (int c = 0; c < wd; ++c)
            img[size_t(r) * wd + c] =
                src[size_t(((newest - 63 + r) % ring + ring) % ring) * cols + 4 + c];
        const std::vector<double> ref = CnnReference(w, img, wd);
        EXPECT_LE(RelErr(gv.data(), ref.data(), wd), kBf16Tol) << "step " << step;
      }
    if (probe) {
      ASSERT_EQ(wd == prev_width, step != 52) << "the lengths no longer probe both cases";
      const double shift = probe_row_r ? -1.0 : 1.0;
      std::vector<float> st = interior.Host();
      int shifted = 0;
      for (int c = 0; c < wd; ++c) {
        const bool incremental = wd == prev_width || c / 16 * 16 + 16 <= prev_width - 2;
        EXPECT_NEAR(got[c] - want[c], incremental ? shift : 0.0, 1e-3)
            << "step " << step << " column " << c;
        if (incremental) {
          st[img0 + c] -= 64.f * shift;  // undo the probe
          ++shifted;
        }
      }
      EXPECT_EQ(shifted, step == 52 ? (prev_width - 2) / 16 * 16 : wd);
      ASSERT_CUDA(cudaMemcpy(interior.get(), st.data(), st.size() * 4, cudaMemcpyHostToDevice));
    }
    const std::vector<int32_t> ch = count.Host();
    EXPECT_EQ(ch[size_t(slot) * nl * nkv], hcount);
  }
}

// Top-k reference: sort by (score desc, index asc), NaN last, -0 == +0.
std::vector<int32_t> TopkReference(const float* s, int n, int k) {
  std::vector<int> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  auto key = [&](int i) { return std::isnan(s[i]) ? -INFINITY : s[i]; };
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) {
    const float ka = key(a), kb = key(b);
    if (ka != kb) return ka > kb;
    if (std::isnan(s[a]) != std::isnan(s[b])) return !std::isnan(s[a]);
    return a < b;
  });
  std::vector<int32_t> out(idx.begin(), idx.begin() + k);
  std::sort(out.begin(), out.end());
  for (int32_t& v : out) v += kSinkBlocks;
  return out;
}

TEST(TopkSelect, TiesNanNegativeZeroAndSmallImages) {
  std::mt19937_64 rng(8);
  const int nl = 2, nkv = 3, cols = 8192, k = 20;
  const std::vector<int32_t> next_lens = {131000, 1000, 200, 600};
  const std::vector<int32_t> seq_slots = {1, 3, 0, 2};
  const int batch = 4;
  std::vector<float> scores(size_t(batch) * nl * nkv * cols);
  std::uniform_int_distribution<int> q(0, 6);
  std::normal_distribution<float> nd;
  for (size_t i = 0; i < scores.size(); ++i) {
    const int img = static_cast<int>(i / cols);
    if (img % 3 == 0) {
      scores[i] = q(rng) * 0.5f;  // heavy ties
    } else if (img % 3 == 1) {
      scores[i] = nd(rng);
    } else {
      const int r = q(rng);
      scores[i] = r == 0 ? -0.0f : r == 1 ? 0.0f : r == 2 ? NAN : nd(rng);
    }
  }
  Dev<float> ds(scores);
  Dev<int32_t> dlens(next_lens), dslots(seq_slots);
  const int stride = k;
  Dev<int32_t> sel(size_t(4) * nl * nkv * stride), cnt(size_t(4) * nl * nkv), lens(4);
  sel.Poison();
  cnt.Poison();
  lens.Poison();
  TopkArgs a;
  a.batch = batch;
  a.num_layers = nl;
  a.num_kv_heads = nkv;
  a.next_lens = dlens.get();
  a.seq_slots = dslots.get();
  a.scores = ds.get();
  a.score_cols = cols;
  a.k_blocks = k;
  a.out = Selection{sel.get(), cnt.get(), lens.get(), nl, nkv, stride};
  ASSERT_CUDA(LaunchTopkSelect(a, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  const std::vector<int32_t> selh = sel.Host(), cnth = cnt.Host(), lensh = lens.Host();
  for (int b = 0; b < batch; ++b) {
    EXPECT_EQ(lensh[seq_slots[b]], next_lens[b]);
    const int n = NumCandidates(next_lens[b]);
    for (int li = 0; li < nl; ++li)
      for (int g = 0; g < nkv; ++g) {
        const size_t img = (size_t(seq_slots[b]) * nl + li) * nkv + g;
        std::vector<int32_t> want;
        if (NeedsPrediction(next_lens[b], k)) {
          want = TopkReference(&scores[((size_t(b) * nl + li) * nkv + g) * cols], n, k);
        } else {
          for (int i = 0; i < KeptCandidates(next_lens[b], k); ++i) want.push_back(kSinkBlocks + i);
        }
        ASSERT_EQ(cnth[img], static_cast<int>(want.size())) << b << " " << li << " " << g;
        std::vector<int32_t> got(selh.begin() + img * stride,
                                 selh.begin() + img * stride + want.size());
        EXPECT_EQ(got, want) << "b " << b << " layer " << li << " head " << g;
      }
  }
}

TEST(BuildLists, SinkSelectionLocalSlotsCalibrationAndMismatch) {
  std::mt19937_64 rng(9);
  const int layers = 4, first = 1, nl = 3, nkv = 2, max_blocks = 100, k = 5, sel_stride = 5;
  PoolFixture pf(rng, 3, layers, nkv, 16, max_blocks);
  // 1500: selection may include the block the local window starts in; 100: sink and local
  // window overlap; 333: calibrating.
  const std::vector<int32_t> lens = {1500, 100, 333};
  const std::vector<int32_t> slots_seq = {2, 0, 1};
  const std::vector<int32_t> dense = {0, 0, 1};
  const int batch = 3;
  std::vector<int32_t> sel(size_t(3) * nl * nkv * sel_stride, -1), cnt(size_t(3) * nl * nkv);
  std::vector<int32_t> sel_lens = {lens[1], lens[2], lens[0]};  // by slot
  for (int b = 0; b < batch; ++b)
    for (int li = 0; li < nl; ++li)
      for (int g = 0; g < nkv; ++g) {
        const size_t img = (size_t(slots_seq[b]) * nl + li) * nkv + g;
        const int n = NumCandidates(lens[b]);
        std::vector<int32_t> c;
        for (int i = 0; i < n; ++i) c.push_back(kSinkBlocks + i);
        std::shuffle(c.begin(), c.end(), rng);
        c.resize(KeptCandidates(lens[b], k));
        if (b == 0 && g == 0 && n > 0) c.back() = kSinkBlocks + n - 1;  // the straddling block
        std::sort(c.begin(), c.end());
        c.erase(std::unique(c.begin(), c.end()), c.end());
        cnt[img] = static_cast<int>(c.size());
        std::copy(c.begin(), c.end(), sel.begin() + img * sel_stride);
      }
  Dev<int32_t> dsel(sel), dcnt(cnt), dsel_lens(sel_lens), dlens(lens), dslots(slots_seq),
      ddense(dense), err(std::vector<int32_t>{0});
  const int ls = MaxListLength(k);
  const int rpl = batch * nkv + 3;
  Dev<int32_t> counts(size_t(nl) * rpl), blocks(size_t(nl) * rpl * ls), slots(blocks.size()),
      starts(blocks.size()), calib(size_t(batch) * nkv);
  counts.Poison();
  calib.Poison();
  BuildListsArgs a;
  a.batch = batch;
  a.first_layer = first;
  a.num_layers = nl;
  a.num_kv_heads = nkv;
  a.context_lens = dlens.get();
  a.seq_slots = dslots.get();
  a.dense = ddense.get();
  a.sel = Selection{dsel.get(), dcnt.get(), dsel_lens.get(), nl, nkv, sel_stride};
  a.table = pf.Table();
  a.rows_per_layer = rpl;  // a stride larger than the batch, as in the decoder
  a.counts = counts.get();
  a.blocks = blocks.get();
  a.slots = slots.get();
  a.starts = starts.get();
  a.calib_counts = calib.get();
  a.list_stride = ls;
  a.error = err.get();
  ASSERT_CUDA(LaunchBuildLists(a, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  const std::vector<int32_t> ch = counts.Host(), bh = blocks.Host(), sh = slots.Host(),
                             fh = starts.Host(), calh = calib.Host();
  EXPECT_EQ(err.Host()[0], 0);
  for (int b = 0; b < batch; ++b)
    for (int g = 0; g < nkv; ++g) EXPECT_EQ(calh[b * nkv + g], dense[b] ? -1 : 0);
  for (int li = 0; li < nl; ++li)
    for (int b = 0; b < batch; ++b)
      for (int g = 0; g < nkv; ++g) {
        const size_t r = size_t(li) * rpl + b * nkv + g;
        const size_t img = (size_t(slots_seq[b]) * nl + li) * nkv + g;
        // Expected: sink blocks, chosen, local blocks; a block once, lowest first token.
        std::map<int, int> want;
        for (int i = 0; i < SinkBlocks(lens[b]); ++i) want[i] = 0;
        for (int i = 0; i < cnt[img]; ++i) want[sel[img * sel_stride + i]] = 0;
        const int fl = FirstLocalBlock(lens[b]);
        for (int i = fl; i < NumBlocks(lens[b]); ++i) {
          const int f = i == fl ? LocalStart(lens[b]) % 16 : 0;
          want[i] = want.count(i) ? std::min(want[i], f) : f;
        }
        ASSERT_EQ(ch[r], static_cast<int>(want.size())) << "b " << b << " layer " << li;
        EXPECT_LE(ch[r], ListLengthBound(lens[b], k));
        int i = 0;
        for (const auto& [blk, f] : want) {
          EXPECT_EQ(bh[r * ls + i], blk);
          EXPECT_EQ(fh[r * ls + i], f) << "block " << blk;
          EXPECT_EQ(sh[r * ls + i], pf.Slot(slots_seq[b], first + li, g, blk));
          ++i;
        }
      }
  // A selection made for another length is an error, never silently used.
  std::vector<int32_t> bad_lens = sel_lens;
  bad_lens[2] += 1;
  Dev<int32_t> dbad(bad_lens);
  a.sel.lens = dbad.get();
  ASSERT_CUDA(LaunchBuildLists(a, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  EXPECT_EQ(err.Host()[0], 1);
}

}  // namespace
}  // namespace apr::cuda
