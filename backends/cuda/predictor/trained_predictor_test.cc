// The trained predictor of the bundled model on the GPU (tag gpu): the CUDA CNN and top-k
// select, from the same attention history, the blocks the CPU predictor
// (predictor/cnn.h, float32) ranks highest. The GPU runs the CNN's convolutions in bf16 on
// the tensor cores, so a candidate whose CPU score is within a bf16 rounding of the k-th
// may change places with it; every other block must be chosen by both.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "backends/cuda/block_rules.h"
#include "backends/cuda/predictor/hybrid_select.h"
#include "backends/cuda/predictor/predictor_cnn.h"
#include "backends/cuda/predictor/predictor_weights.h"
#include "backends/cuda/predictor/topk_select.h"
#include "backends/cuda/test_util.h"
#include "gtest/gtest.h"
#include "predictor/cnn.h"
#include "predictor/policy.h"
#include "predictor/selection.h"

namespace apr::cuda {
namespace {

using testing::Dev;
using testing::DevBf16;
using testing::kBf16Tol;
using testing::RoundBf16;

constexpr char kPredictor[] = "models/apr-tiny/predictor.safetensors";

// History rows shaped like attention: a few blocks hot for stretches of rows (the blocks
// the text keeps returning to), the rest small and noisy, a tenth exactly zero. Values are
// pooled softmax probabilities, in [0, 1].
std::vector<float> AttentionLikeHistory(std::mt19937_64& rng, int images, int ring, int cols) {
  std::vector<float> h(size_t(images) * ring * cols);
  std::exponential_distribution<float> small(400.f);
  std::uniform_real_distribution<float> u(0, 1);
  for (int img = 0; img < images; ++img) {
    std::vector<int> hot(12);
    for (int& c : hot) c = static_cast<int>(u(rng) * cols);
    for (int r = 0; r < ring; ++r) {
      if (u(rng) < 0.1f)
        hot[static_cast<size_t>(u(rng) * hot.size())] = static_cast<int>(u(rng) * cols);
      float* row = &h[(size_t(img) * ring + r) * cols];
      for (int c = 0; c < cols; ++c) row[c] = u(rng) < 0.1f ? 0.f : std::min(1.f, small(rng));
      for (int c : hot) row[c] = std::min(1.f, 0.05f + 0.3f * u(rng));
    }
  }
  return h;
}

struct Case {
  int next_len;
  int hist_row;  // the ring's newest row
};

TEST(TrainedPredictor, GpuSelectsTheBlocksTheCpuPredictorRanksHighest) {
  auto gpu_weights = LoadPredictorWeights(kPredictor);
  ASSERT_TRUE(gpu_weights.ok()) << gpu_weights.status();
  auto cpu = predictor::PredictorCnn::Load(kPredictor);
  ASSERT_TRUE(cpu.ok()) << cpu.status();

  std::mt19937_64 rng(2502);
  const int nkv = 2, ring = kHistoryRing, k = PredictedBlocks(1024);  // 56 blocks
  const std::vector<Case> cases = {{1500, 63}, {2900, 5}, {4096, 71}, {1100, 40}};
  const int batch = static_cast<int>(cases.size());
  const int cols = NumCandidates(4096) + 8;
  const std::vector<float> hist = AttentionLikeHistory(rng, batch * nkv, ring, cols);
  std::vector<int32_t> lens, slots, rows;
  for (int b = 0; b < batch; ++b) {
    lens.push_back(cases[b].next_len);
    slots.push_back(b);
    rows.push_back(cases[b].hist_row);
  }
  Dev<float> dw(*gpu_weights), dhist(hist);
  Dev<uint2> frag(kPredictorFragments);
  ASSERT_CUDA(LaunchPackPredictorFragments(dw.get(), frag.get(), nullptr));
  Dev<int32_t> dlens(lens), dslots(slots), drow(rows);
  Dev<float> scores(size_t(batch) * nkv * cols);
  PredictorCnnArgs a;
  a.weights = dw.get();
  a.fragments = frag.get();
  a.conv1 = MakePredictorConv1(gpu_weights->data());
  a.batch = batch;
  a.first_layer = 0;
  a.num_layers = 1;
  a.num_kv_heads = nkv;
  a.next_lens = dlens.get();
  a.seq_slots = dslots.get();
  a.history_row = drow.get();
  a.history = HistoryView{dhist.get(), 1, nkv, ring, cols};
  a.k_blocks = k;
  a.max_cols = cols;
  a.scores = scores.get();
  a.score_cols = cols;
  ASSERT_CUDA(LaunchPredictorCnn(a, nullptr));
  Dev<int32_t> sel(size_t(batch) * nkv * k), cnt(size_t(batch) * nkv), slens(batch);
  TopkArgs t;
  t.batch = batch;
  t.num_layers = 1;
  t.num_kv_heads = nkv;
  t.next_lens = dlens.get();
  t.seq_slots = dslots.get();
  t.scores = scores.get();
  t.score_cols = cols;
  t.k_blocks = k;
  t.out = Selection{sel.get(), cnt.get(), slens.get(), 1, nkv, k};
  ASSERT_CUDA(LaunchTopkSelect(t, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  const std::vector<int32_t> selh = sel.Host(), cnth = cnt.Host();

  predictor::CnnWorkspace ws;
  int same = 0, total = 0;
  for (int b = 0; b < batch; ++b) {
    const int width = NumCandidates(cases[b].next_len);
    ASSERT_TRUE(NeedsPrediction(cases[b].next_len, k));
    for (int g = 0; g < nkv; ++g) {
      // The image the GPU reads: the 64 newest ring rows, oldest first, candidate columns.
      std::vector<float> img(size_t(kHistoryRows) * width);
      const float* src = &hist[(size_t(b) * nkv + g) * ring * cols];
      for (int r = 0; r < kHistoryRows; ++r) {
        const int ring_row = ((cases[b].hist_row - (kHistoryRows - 1) + r) % ring + ring) % ring;
        std::copy_n(src + size_t(ring_row) * cols + kSinkBlocks, width, &img[size_t(r) * width]);
      }
      std::vector<float> cpu_scores(width);
      cpu->Predict(img.data(), kHistoryRows, width, width, cpu_scores.data(), ws);
      std::vector<int> order(width);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int x, int y) { return cpu_scores[x] > cpu_scores[y]; });
      const float kth = cpu_scores[order[k - 1]];
      // A bf16 rounding of the score's scale: how far apart a swapped pair may be.
      float scale = 0;
      for (float s : cpu_scores) scale = std::max(scale, std::fabs(s));
      const float near = 2 * kBf16Tol * scale;
      std::set<int32_t> want;
      for (int i = 0; i < k; ++i) want.insert(kSinkBlocks + order[i]);
      const size_t img_index = size_t(b) * nkv + g;
      ASSERT_EQ(cnth[img_index], k);
      std::set<int32_t> got(selh.begin() + img_index * k, selh.begin() + (img_index + 1) * k);
      ASSERT_EQ(got.size(), static_cast<size_t>(k)) << "a block was chosen twice";
      for (int32_t blk : got) {
        ASSERT_GE(blk, kSinkBlocks);
        ASSERT_LT(blk, kSinkBlocks + width);
        if (want.count(blk)) {
          ++same;
        } else {
          EXPECT_GE(cpu_scores[blk - kSinkBlocks], kth - near)
              << "b " << b << " head " << g << ": the GPU chose block " << blk
              << ", which the CPU ranks well below its k-th";
        }
      }
      for (int32_t blk : want) {
        if (!got.count(blk))
          EXPECT_LE(cpu_scores[blk - kSinkBlocks], kth + near)
              << "b " << b << " head " << g << ": the GPU left out block " << blk
              << ", which the CPU ranks well above its k-th";
      }
      total += k;
    }
  }
  std::printf("trained predictor, GPU vs CPU selection: %d of %d blocks equal (%.4f)\n", same,
              total, double(same) / total);
  // Swaps happen only at near-ties; more than 2% of the blocks would mean the GPU ranks
  // differently, not that rounding moved a tie.
  EXPECT_GE(same, 0.98 * total);
}

// predictor-hybrid: the GPU's two halves (the top-k keeping HybridCnnBlocks for the CNN,
// then the query's Quest bound at the step, hybrid_select.h) against the CPU policy
// "predictor-hybrid" (predictor/policy.cc AddQueryBlocks) on the same history, keys and
// query. The GPU's top-k gets the CPU CNN's float32 scores (the bf16 CNN is compared
// above), and the keys are bf16 values on both sides (the GPU's cache holds bf16; the key
// summary is their exact min and max), so the sets must be equal, not merely overlap.
TEST(TrainedPredictor, HybridSelectsTheCpuPolicysBlocks) {
  auto cpu = predictor::PredictorCnn::Load(kPredictor);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  std::mt19937_64 rng(1707);
  const int nh = 4, nkv = 2, hd = 64, group = nh / nkv, ring = kHistoryRing;
  const int k = PredictedBlocks(1024), nq = HybridQueryBlocks(k);  // 56 = 42 CNN + 14 query
  const std::vector<Case> cases = {{1500, 63}, {2900, 5}, {4096, 71}, {1100, 40}, {300, 10}};
  const int batch = static_cast<int>(cases.size());
  const int max_blocks = NumBlocks(4096) + 8, cols = max_blocks;
  const std::vector<float> hist = AttentionLikeHistory(rng, batch * nkv, ring, cols);
  std::vector<int32_t> lens, slots;
  for (int b = 0; b < batch; ++b) lens.push_back(cases[b].next_len), slots.push_back(b);
  // Keys (bf16 values) of every block, their per-block min/max, queries.
  std::vector<std::vector<float>> keys(batch * nkv);
  std::vector<float> summary(size_t(batch) * nkv * max_blocks * 2 * hd, 0.f);
  for (int b = 0; b < batch; ++b) {
    for (int g = 0; g < nkv; ++g) {
      std::vector<float>& kv = keys[b * nkv + g];
      kv = testing::Uniform(rng, size_t(cases[b].next_len) * hd);
      for (float& x : kv) x = RoundBf16(x);
      for (int blk = 0; blk < cases[b].next_len / kBlockTokens; ++blk) {
        float* out = &summary[((size_t(b) * nkv + g) * max_blocks + blk) * 2 * hd];
        for (int d = 0; d < hd; ++d) {
          float mn = INFINITY, mx = -INFINITY;
          for (int t = 0; t < kBlockTokens; ++t) {
            mn = std::min(mn, kv[(size_t(blk) * kBlockTokens + t) * hd + d]);
            mx = std::max(mx, kv[(size_t(blk) * kBlockTokens + t) * hd + d]);
          }
          out[d] = mn, out[hd + d] = mx;
        }
      }
    }
  }
  const std::vector<float> q = testing::Uniform(rng, size_t(batch) * nh * hd);
  // The CPU policy, its history made the ring's 64 newest rows (oldest first), all columns.
  predictor::PolicyFactoryOptions po;
  po.dims = predictor::ModelDims{1, nh, nkv, hd};
  po.cnn = &*cpu;
  std::vector<float> scores(size_t(batch) * nkv * cols, 0.f);
  std::vector<std::set<int32_t>> want(batch * nkv);
  for (int b = 0; b < batch; ++b) {
    auto policy = predictor::MakePolicy("predictor-hybrid", po);
    ASSERT_TRUE(policy.ok()) << policy.status();
    const int len = cases[b].next_len, prompt = len - 1, nb = NumBlocks(prompt);
    std::vector<float> probs(size_t(nh) * kHistoryRows * prompt, 0.f);
    for (int g = 0; g < nkv; ++g) {
      const float* src = &hist[(size_t(b) * nkv + g) * ring * cols];
      for (int r = 0; r < kHistoryRows; ++r) {
        const int ring_row = ((cases[b].hist_row - (kHistoryRows - 1) + r) % ring + ring) % ring;
        for (int blk = 0; blk < nb; ++blk)  // pooled over the block: its first token
          probs[(size_t(g * group) * kHistoryRows + r) * prompt + blk * kBlockTokens] =
              src[size_t(ring_row) * cols + blk];
      }
      // The CNN's scores the GPU top-k is given: the CPU's, from the same rows.
      const int width = NumCandidates(len);
      std::vector<float> img(size_t(kHistoryRows) * width);
      for (int r = 0; r < kHistoryRows; ++r) {
        const int ring_row = ((cases[b].hist_row - (kHistoryRows - 1) + r) % ring + ring) % ring;
        std::copy_n(src + size_t(ring_row) * cols + kSinkBlocks, width, &img[size_t(r) * width]);
      }
      predictor::CnnWorkspace ws;
      if (width >= kMinPredictedCandidates)
        cpu->Predict(img.data(), kHistoryRows, width, width, &scores[(size_t(b) * nkv + g) * cols],
                     ws);
    }
    (*policy)->ObservePrefill(0, prompt, kHistoryRows, nh, probs.data());
    std::vector<const float*> per_head;
    for (int g = 0; g < nkv; ++g) per_head.push_back(keys[b * nkv + g].data());
    DecodeStep step;
    step.layer = 0;
    step.position = len - 1;
    step.context_len = len;
    step.num_heads = nh;
    step.num_kv_heads = nkv;
    step.head_dim = hd;
    step.queries = &q[size_t(b) * nh * hd];
    step.keys = KeysView{per_head.data(), len, hd};
    std::vector<TokenSpans> spans;
    (*policy)->SelectTokens(step, &spans);
    predictor::SelectionConfig sc;
    const predictor::StepLayout layout = predictor::MakeStepLayout(sc, len);
    for (int g = 0; g < nkv; ++g)
      for (int64_t blk : predictor::CoveredCandidates(layout, kBlockTokens, spans[g]))
        want[b * nkv + g].insert(static_cast<int32_t>(blk));
  }
  // The GPU: top-k of the CNN's part, then the query's part at the step.
  Dev<int32_t> dlens(lens), dslots(slots), err(std::vector<int32_t>{0});
  Dev<float> dscores(scores), dq(q);
  Dev<uint16_t> dsum = DevBf16(summary);
  Dev<int32_t> sel(size_t(batch) * nkv * k), cnt(size_t(batch) * nkv), slens(batch);
  TopkArgs t;
  t.batch = batch;
  t.num_layers = 1;
  t.num_kv_heads = nkv;
  t.next_lens = dlens.get();
  t.seq_slots = dslots.get();
  t.scores = dscores.get();
  t.score_cols = cols;
  t.k_blocks = k;
  t.query_blocks = nq;
  t.out = Selection{sel.get(), cnt.get(), slens.get(), 1, nkv, k};
  t.error = err.get();
  ASSERT_CUDA(LaunchTopkSelect(t, nullptr));
  Dev<int32_t> qblocks(size_t(batch) * nkv * nq), qcounts(size_t(batch) * nkv);
  QuerySelectArgs qa;
  qa.batch = batch;
  qa.num_heads = nh;
  qa.num_kv_heads = nkv;
  qa.head_dim = hd;
  qa.k_blocks = k;
  qa.q = dq.get();
  qa.context_lens = dlens.get();
  qa.seq_slots = dslots.get();
  qa.sel = t.out;
  qa.summary = testing::B(dsum);
  qa.summary_layers = 1;
  qa.max_blocks = max_blocks;
  qa.blocks = qblocks.get();
  qa.counts = qcounts.get();
  qa.stride = nq;
  qa.error = err.get();
  ASSERT_CUDA(LaunchQuerySelect(qa, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  ASSERT_EQ(err.Host()[0], 0);
  const std::vector<int32_t> selh = sel.Host(), cnth = cnt.Host();
  const std::vector<int32_t> qbh = qblocks.Host(), qch = qcounts.Host();
  int equal_images = 0, query_total = 0;
  for (int b = 0; b < batch; ++b) {
    for (int g = 0; g < nkv; ++g) {
      const size_t i = size_t(b) * nkv + g;
      const bool fits = NumCandidates(cases[b].next_len) <= k;
      EXPECT_EQ(cnth[i], fits ? NumCandidates(cases[b].next_len) : k - nq) << "b " << b;
      EXPECT_EQ(qch[i], fits ? 0 : nq) << "b " << b;
      std::set<int32_t> got(selh.begin() + i * k, selh.begin() + i * k + cnth[i]);
      for (int j = 0; j < qch[i]; ++j) {
        EXPECT_TRUE(got.insert(qbh[i * nq + j]).second) << "a query block the CNN chose too";
        if (j > 0) EXPECT_LT(qbh[i * nq + j - 1], qbh[i * nq + j]) << "not ascending";
      }
      EXPECT_EQ(got, want[i]) << "b " << b << " head " << g << " (len " << cases[b].next_len << ")";
      equal_images += got == want[i];
      query_total += qch[i];
    }
  }
  std::printf(
      "predictor-hybrid, GPU (top-k of the CNN part + query Quest bound) vs CPU policy: %d of "
      "%d images select equal sets (%d query blocks; %d CNN + %d query per image)\n",
      equal_images, batch * nkv, query_total, k - nq, nq);
}

}  // namespace
}  // namespace apr::cuda
