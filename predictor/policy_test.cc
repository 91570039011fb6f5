// Every policy against hand-computed selections on tiny inputs, plus the oracle and the
// measurement against a brute-force double-precision reference on random inputs.
#include "predictor/policy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "predictor/measure.h"

namespace apr::predictor {
namespace {

// Tiny geometry: block 2, sink 2 tokens, local 2 tokens, history 3 rows, budget 8 tokens
// = sink + local + 2 blocks. 1 layer, 4 query heads, 2 KV heads (group 2), head_dim 2.
SelectionConfig Tiny() {
  SelectionConfig c;
  c.block = 2, c.sink = 2, c.local = 2, c.history = 3, c.budget = 8;
  return c;
}
constexpr ModelDims kDims{1, 4, 2, 2};

// Owns the buffers a DecodeStep points into.
struct StepData {
  std::vector<float> q;               // [4][2]
  std::vector<std::vector<float>> k;  // [2][len][2]
  std::vector<const float*> ptrs;
  DecodeStep step;

  StepData(int64_t len, std::vector<float> queries, std::vector<std::vector<float>> keys)
      : q(std::move(queries)), k(std::move(keys)) {
    for (auto& kv : k) kv.resize(len * 2, 0.0f);
    ptrs = {k[0].data(), k[1].data()};
    step.layer = 0, step.position = len - 1, step.context_len = len;
    step.num_heads = 4, step.num_kv_heads = 2, step.head_dim = 2;
    step.queries = q.data();
    step.keys = KeysView{ptrs.data(), len, 2};
  }
};

StepData ZeroStep(int64_t len) { return StepData(len, std::vector<float>(8, 0.0f), {{}, {}}); }

TEST(StreamingPolicyTest, SinkPlusMostRecentBlocks) {
  StreamingPolicy p(Tiny(), kDims);
  StepData s = ZeroStep(13);  // 12 previous tokens = 6 blocks; candidates 1..4; keep 2
  std::vector<TokenSpans> spans;
  p.SelectTokens(s.step, &spans);
  ASSERT_EQ(spans.size(), 2u);
  const TokenSpans want = {{0, 2}, {6, 10}, {11, 13}};
  EXPECT_EQ(spans[0], want);
  EXPECT_EQ(spans[1], want);
}

TEST(SelectionPolicyTest, DenseLayersAttendEverything) {
  SelectionConfig c = Tiny();
  c.dense_layers = 1;
  StreamingPolicy p(c, ModelDims{2, 4, 2, 2});
  StepData s = ZeroStep(13);
  std::vector<TokenSpans> spans = {{{0, 1}}};
  p.SelectTokens(s.step, &spans);  // layer 0: dense
  EXPECT_TRUE(spans.empty());
  s.step.layer = 1;
  p.SelectTokens(s.step, &spans);
  EXPECT_EQ(spans[0], (TokenSpans{{0, 2}, {6, 10}, {11, 13}}));
}

TEST(FullAttentionPolicyTest, LeavesSpansEmpty) {
  FullAttentionPolicy p(Tiny(), kDims);
  StepData s = ZeroStep(13);
  std::vector<TokenSpans> spans = {{{0, 1}}};
  p.SelectTokens(s.step, &spans);
  EXPECT_TRUE(spans.empty());
}

TEST(SelectionPolicyTest, AllCandidatesWhenTheyFit) {
  StreamingPolicy p(Tiny(), kDims);
  StepData s = ZeroStep(9);  // 8 previous tokens = 4 blocks; candidates 1..2: both fit
  std::vector<TokenSpans> spans;
  p.SelectTokens(s.step, &spans);
  EXPECT_EQ(spans[0], (TokenSpans{{0, 6}, {7, 9}}));  // token 6 is in neither (see docs)
}

// Keys of KV head 0 for tokens 2..9 (blocks 1..4); KV head 1 all zero.
std::vector<std::vector<float>> QuestKeys() {
  std::vector<float> k0(13 * 2, 0.0f);
  const float v[] = {1,    0,   0,    0,   // block 1: tokens 2, 3
                     0,    2,   0,    -1,  // block 2
                     -1,   .5f, .5f,  -3,  // block 3
                     1.5f, 0,   1.5f, 0};  // block 4
  std::copy(std::begin(v), std::end(v), k0.begin() + 4);
  return {k0, std::vector<float>(13 * 2, 0.0f)};
}

TEST(QuestPolicyTest, UpperBoundMaxOverTheGroup) {
  // q0 = (1, 0), q1 = (0, 1). Bounds sum_j max(q_j min_j, q_j max_j):
  //   block 1: min (0,0) max (1,0): q0 -> 1, q1 -> 0          => 1
  //   block 2: min (0,-1) max (0,2): q0 -> 0, q1 -> 2         => 2
  //   block 3: min (-1,-3) max (.5,.5): q0 -> .5, q1 -> .5    => .5
  //   block 4: min = max = (1.5, 0): q0 -> 1.5, q1 -> 0       => 1.5
  // Keep 2: blocks 2 and 4. KV head 1 (zero keys): all tie -> blocks 1, 2.
  QuestPolicy p(Tiny(), kDims);
  StepData s(13, {1, 0, 0, 1, 5, 5, 5, 5}, QuestKeys());
  std::vector<TokenSpans> spans;
  p.SelectTokens(s.step, &spans);
  EXPECT_EQ(spans[0], (TokenSpans{{0, 2}, {4, 6}, {8, 10}, {11, 13}}));
  EXPECT_EQ(spans[1], (TokenSpans{{0, 6}, {11, 13}}));
}

TEST(OraclePolicyTest, PicksTheBlocksWithTheMostGroupMass) {
  // Query head 0 looks hard at token 5 (block 2), head 1 at token 8 (block 4); with a
  // large query the true attention is concentrated there.
  std::vector<float> k0(13 * 2, 0.0f), k1(13 * 2, 0.0f);
  k0[5 * 2] = 1;      // token 5 = (1, 0)
  k0[8 * 2 + 1] = 1;  // token 8 = (0, 1)
  k1[3 * 2] = 1;      // KV head 1: token 3 (block 1) for both its heads
  OraclePolicy p(Tiny(), kDims);
  StepData s(13, {20, 0, 0, 20, 20, 0, 20, 0}, {k0, k1});
  std::vector<TokenSpans> spans;
  p.SelectTokens(s.step, &spans);
  EXPECT_EQ(spans[0], (TokenSpans{{0, 2}, {4, 6}, {8, 10}, {11, 13}}));
  // KV head 1: block 1 wins, then the remaining blocks tie at equal mass -> block 2.
  EXPECT_EQ(spans[1], (TokenSpans{{0, 6}, {11, 13}}));
}

TEST(H2OPolicyTest, AccumulatesGroupMaxOfBlockMass) {
  // Prefill of 12 tokens, 2 observed rows, probs [4 heads][2 rows][12].
  std::vector<float> probs(4 * 2 * 12, 0.0f);
  auto at = [&](int h, int r, int t) -> float& { return probs[(h * 2 + r) * 12 + t]; };
  at(0, 0, 4) = 1;                       // row 0: head 0 -> block 2
  at(1, 0, 6) = .5f, at(1, 0, 8) = .5f;  // head 1 -> blocks 3, 4
  at(0, 1, 8) = 1;                       // row 1: head 0 -> block 4
  at(1, 1, 2) = 1;                       // head 1 -> block 1
  at(2, 0, 10) = 1, at(3, 1, 10) = 1;    // KV head 1: block 5 twice
  H2OPolicy p(Tiny(), kDims);
  EXPECT_GT(p.PrefillRowsWanted(), 1000);
  p.ObservePrefill(0, 12, 2, 4, probs.data());
  // KV 0: row 0 -> b2 1, b3 .5, b4 .5; row 1 -> b1 1, b4 1. Sum: b1 1, b2 1, b3 .5, b4 1.5.
  const std::vector<double> want = {0, 1, 1, .5, 1.5, 0};
  EXPECT_EQ(p.accumulated(0, 0), want);
  EXPECT_EQ(p.accumulated(0, 1), (std::vector<double>{0, 0, 0, 0, 0, 2}));
  StepData s = ZeroStep(13);
  std::vector<TokenSpans> spans;
  p.SelectTokens(s.step, &spans);
  // Keep 2 of blocks 1..4: b4 (1.5), then b1 and b2 tie at 1 -> b1.
  EXPECT_EQ(spans[0], (TokenSpans{{0, 4}, {8, 10}, {11, 13}}));
  // KV 1: block 5 is not a candidate (the local window's neighbour); all 0 -> b1, b2.
  EXPECT_EQ(spans[1], (TokenSpans{{0, 6}, {11, 13}}));

  // A decode step's (sparse) attention adds in: head 1 puts .8 on token 7 (block 3).
  std::vector<float> dp(4 * 13, 0.0f);
  dp[1 * 13 + 7] = .8f;
  p.ObserveDecode(s.step, dp.data());
  EXPECT_NEAR(p.accumulated(0, 0)[3], 1.3, 1e-6);
  EXPECT_EQ(p.accumulated(0, 0).size(), 7u);  // 13 tokens = 7 blocks
}

TEST(SnapKVPolicyTest, PooledObservationWindow) {
  SnapKVPolicy p(Tiny(), kDims, /*window=*/2, /*kernel=*/3);
  EXPECT_EQ(p.PrefillRowsWanted(), 2);
  // Prefix = 12 - 2 = 10 tokens. Head 0, row 0 attends token 5 only: votes t5 = 1;
  // average pool (kernel 3): t4 = t5 = t6 = 1/3; blocks: b2 = 2/3, b3 = 1/3.
  std::vector<float> probs(4 * 2 * 12, 0.0f);
  probs[(0 * 2 + 0) * 12 + 5] = 1;
  probs[(0 * 2 + 1) * 12 + 11] = 1;  // inside the window: ignored
  p.ObservePrefill(0, 12, 2, 4, probs.data());
  StepData s = ZeroStep(13);
  std::vector<TokenSpans> spans;
  p.SelectTokens(s.step, &spans);
  EXPECT_EQ(spans[0], (TokenSpans{{0, 2}, {4, 8}, {11, 13}}));
  EXPECT_EQ(spans[1], (TokenSpans{{0, 6}, {11, 13}}));
}

// A CNN whose score is the column mean of the history: conv1 channel 0 and conv2 channel 0
// pass the centre pixel through, conv3 reads channel 0; every other weight is zero.
PredictorCnn MeanCnn() {
  CnnWeights w;
  w.conv1_weight.assign(16 * 9, 0.0f);
  w.conv1_bias.assign(16, 0.0f);
  w.conv2_weight.assign(32 * 16 * 9, 0.0f);
  w.conv2_bias.assign(32, 0.0f);
  w.conv3_weight.assign(32, 0.0f);
  w.conv3_bias.assign(1, 0.0f);
  w.conv1_weight[4] = 1;  // [0][0][1][1]
  w.conv2_weight[4] = 1;  // [0][0][1][1]
  w.conv3_weight[0] = 1;
  return *PredictorCnn::FromWeights(std::move(w));
}

TEST(AttentionPredictorPolicyTest, PrefillHistoryPredictionAndUpdate) {
  const PredictorCnn cnn = MeanCnn();
  AttentionPredictorPolicy p(Tiny(), kDims, &cnn,
                             {/*calibration_step=*/2, CalibrationSource::kFull});
  EXPECT_EQ(p.PrefillRowsWanted(), 3);
  // Prompt of 12 tokens, only 2 rows reported (a short prompt would do this): the oldest
  // history row stays zero.
  std::vector<float> probs(4 * 2 * 12, 0.0f);
  auto at = [&](int h, int r, int t) -> float& { return probs[(h * 2 + r) * 12 + t]; };
  at(0, 0, 3) = .6f, at(1, 0, 9) = .3f;  // KV 0 row 0: b1 .6, b4 .3
  at(0, 1, 6) = .2f, at(1, 1, 7) = .5f;  // KV 0 row 1: b3 .5 (max over heads)
  at(1, 1, 8) = .25f;                    //            b4 .25
  p.ObservePrefill(0, 12, 2, 4, probs.data());
  const AttentionHistory& h = p.history(0, 0);
  ASSERT_EQ(h.rows(), 3);
  ASSERT_EQ(h.cols(), 6);
  const std::vector<float> want = {0, 0,   0, 0, 0,   0,  //
                                   0, .6f, 0, 0, .3f, 0, 0, 0, 0, .5f, .25f, 0};
  EXPECT_EQ(std::vector<float>(h.data(), h.data() + 18), want);

  // Step 1 (L = 13): candidates 1..4, column means (x3): b1 .6, b2 0, b3 .5, b4 .55
  // -> keep b1, b4.
  StepData s(13, {1, 0, 0, 1, 0, 0, 0, 0}, QuestKeys());
  std::vector<TokenSpans> spans;
  p.SelectTokens(s.step, &spans);
  EXPECT_EQ(spans[0], (TokenSpans{{0, 4}, {8, 10}, {11, 13}}));
  EXPECT_FALSE(p.IsCalibrationStep(0));
  // The sparse attention of step 1 (13 tokens -> 7 blocks: a zero column is added).
  std::vector<float> dp(4 * 13, 0.0f);
  dp[0 * 13 + 2] = .7f, dp[1 * 13 + 12] = .9f;
  p.ObserveDecode(s.step, dp.data());
  ASSERT_EQ(h.cols(), 7);
  const std::vector<float> want2 = {0, .6f, 0, 0,   .3f,  0, 0,  //
                                    0, 0,   0, .5f, .25f, 0, 0, 0, .7f, 0, 0, 0, 0, .9f};
  EXPECT_EQ(std::vector<float>(h.data(), h.data() + 21), want2);

  // Step 2 (L = 14) is a calibration step: the history gets the full attention row.
  StepData s2(14, {1, 0, 0, 1, 0, 0, 0, 0}, QuestKeys());
  p.SelectTokens(s2.step, &spans);
  EXPECT_TRUE(p.IsCalibrationStep(0));
  std::vector<float> sparse(4 * 14, 0.0f), full;
  sparse[0] = 1, sparse[14] = 1, sparse[28] = 1, sparse[42] = 1;
  p.ObserveDecode(s2.step, sparse.data());
  FullAttentionProbs(s2.step, &full);
  std::vector<float> pooled(7);
  PoolGroupRow(full.data(), 14, 0, 2, 14, 2, pooled.data());
  EXPECT_EQ(std::vector<float>(h.data() + 14, h.data() + 21), pooled);
  EXPECT_GT(pooled[4], 0.0f);  // block 4 gets mass from the full row
}

TEST(AttentionPredictorPolicyTest, FewerThanThreeCandidatesKeepsTheLowest) {
  const PredictorCnn cnn = MeanCnn();
  SelectionConfig c = Tiny();
  c.budget = 6;  // one block
  AttentionPredictorPolicy p(c, kDims, &cnn, {5, CalibrationSource::kFull});
  StepData s = ZeroStep(9);  // candidates 1..2
  std::vector<TokenSpans> spans;
  p.SelectTokens(s.step, &spans);
  EXPECT_EQ(spans[0], (TokenSpans{{0, 4}, {7, 9}}));
}

TEST(AttentionPredictorPolicyTest, QueryBlocksComeFromTheQuestBoundOfTheRest) {
  // Empty history: the CNN scores tie, so its one block is block 1 (the lowest). The
  // query block is the best Quest bound among blocks 2..4 with both heads of KV head 0 at
  // q = (1, 0): bounds 0, .5, 1.5 (QuestKeys) -> block 4. KV head 1 (zero keys): the
  // bounds tie -> block 2. Without query blocks the CNN would take blocks 1 and 2.
  const PredictorCnn cnn = MeanCnn();
  AttentionPredictorPolicy p(Tiny(), kDims, &cnn, {5, CalibrationSource::kFull, 1});
  StepData s(13, {1, 0, 1, 0, 5, 5, 5, 5}, QuestKeys());
  std::vector<TokenSpans> spans;
  p.SelectTokens(s.step, &spans);
  EXPECT_EQ(spans[0], (TokenSpans{{0, 4}, {8, 10}, {11, 13}}));
  EXPECT_EQ(spans[1], (TokenSpans{{0, 6}, {11, 13}}));
  AttentionPredictorPolicy none(Tiny(), kDims, &cnn, {5, CalibrationSource::kFull, 0});
  none.SelectTokens(s.step, &spans);
  EXPECT_EQ(spans[0], (TokenSpans{{0, 6}, {11, 13}}));
}

TEST(AttentionPredictorPolicyTest, ApproximateCalibrationEstimatesUnselectedBlocks) {
  const PredictorCnn cnn = MeanCnn();
  for (CalibrationSource src :
       {CalibrationSource::kQuest, CalibrationSource::kMeanKey, CalibrationSource::kCenterL2}) {
    AttentionPredictorPolicy p(Tiny(), kDims, &cnn, {1, src});
    StepData s(13, {1, 0, 0, 1, 0, 0, 0, 0}, QuestKeys());
    std::vector<TokenSpans> spans;
    p.SelectTokens(s.step, &spans);  // empty history: all scores 0 -> blocks 1, 2
    ASSERT_EQ(spans[0], (TokenSpans{{0, 6}, {11, 13}}));
    ASSERT_TRUE(p.IsCalibrationStep(0));
    // The sparse attention the decoder would compute over the spans, in double.
    std::vector<float> probs(4 * 13, 0.0f);
    std::vector<double> lse(4);
    for (int h = 0; h < 4; ++h) {
      const auto& k = s.k[h / 2];
      const auto& sp = spans[h / 2];
      double z = 0;
      for (auto [b, e] : sp)
        for (int t = b; t < e; ++t)
          z += std::exp((s.q[h * 2] * k[t * 2] + s.q[h * 2 + 1] * k[t * 2 + 1]) / std::sqrt(2.0));
      lse[h] = std::log(z);
      for (auto [b, e] : sp)
        for (int t = b; t < e; ++t)
          probs[h * 13 + t] = std::exp(
              (s.q[h * 2] * k[t * 2] + s.q[h * 2 + 1] * k[t * 2 + 1]) / std::sqrt(2.0) - lse[h]);
    }
    p.ObserveDecode(s.step, probs.data());
    const AttentionHistory& h = p.history(0, 0);
    // Untouched blocks 3 and 4 (tokens 6..9): estimate exp(m * scale - lse), max over the
    // group, with m the Quest bound or q . mean key. Block 5 (token 10) is incomplete...
    // it is complete (tokens 10, 11) but touched by the local window (token 11).
    auto estimate = [&](int blk) {
      double best = 0;
      for (int hh = 0; hh < 2; ++hh) {
        const float* q = &s.q[hh * 2];
        const auto& k = s.k[0];
        double m = 0, spread = 0;
        for (int j = 0; j < 2; ++j) {
          const double a = k[(2 * blk) * 2 + j], b = k[(2 * blk + 1) * 2 + j];
          if (src == CalibrationSource::kQuest) {
            m += std::max(q[j] * std::min(a, b), q[j] * std::max(a, b));
          } else {
            m += q[j] * (a + b) / 2;  // the mean of two keys is also their centre
            spread += std::pow(q[j] * std::abs(a - b) / 2, 2);
          }
        }
        if (src == CalibrationSource::kCenterL2) m += std::sqrt(spread);
        best = std::max(best, std::min(1.0, std::exp(m / std::sqrt(2.0) - lse[hh])));
      }
      return best;
    };
    EXPECT_NEAR(h.at(2, 3), estimate(3), 1e-5) << CalibrationSourceName(src);
    EXPECT_NEAR(h.at(2, 4), estimate(4), 1e-5) << CalibrationSourceName(src);
    // Touched blocks keep the sparse value: block 1 = max(p0[2], p0[3], p1[2], p1[3]).
    const float b1 = std::max({probs[2], probs[3], probs[13 + 2], probs[13 + 3]});
    EXPECT_FLOAT_EQ(h.at(2, 1), b1);
  }
}

TEST(PolicyFactoryTest, NamesAndErrors) {
  PolicyFactoryOptions o;
  o.selection = SelectionConfig();
  o.dims = kDims;
  for (const std::string& n : AllPolicyNames()) {
    auto p = MakePolicy(n, o);
    if (n.rfind("predictor", 0) == 0) {
      EXPECT_FALSE(p.ok()) << n;  // no weights
    } else {
      ASSERT_TRUE(p.ok()) << n << ": " << p.status();
      EXPECT_EQ((*p)->name(), n);
    }
  }
  const PredictorCnn cnn = MeanCnn();
  o.cnn = &cnn;
  auto p = MakePolicy("predictor-mean", o);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ((*p)->name(), "predictor-mean");
  EXPECT_FALSE(MakePolicy("lru", o).ok());
  o.selection.budget = 130;
  EXPECT_FALSE(MakePolicy("full", o).ok());
}

// ---------------------------------------------------------------------------------------
// Brute force in double: the oracle's choice maximises the group's captured mass, and
// MeasureStep's recall and hit rate match a direct count.
TEST(OracleAndMeasureTest, AgainstBruteForceOnRandomInputs) {
  SelectionConfig c;
  c.block = 4, c.sink = 4, c.local = 8, c.budget = 4 + 8 + 3 * 4;
  const ModelDims dims{1, 6, 2, 8};
  std::mt19937 rng(3);
  std::normal_distribution<float> n(0, 1.5f);
  for (int trial = 0; trial < 20; ++trial) {
    const int64_t len = 40 + trial * 3;
    std::vector<float> q(6 * 8);
    for (float& x : q) x = n(rng);
    std::vector<std::vector<float>> k(2, std::vector<float>(len * 8));
    for (auto& kv : k)
      for (float& x : kv) x = n(rng);
    std::vector<const float*> ptrs = {k[0].data(), k[1].data()};
    DecodeStep step{0, len - 1, len, 6, 2, 8, q.data(), KeysView{ptrs.data(), len, 8}};
    // True probabilities in double.
    std::vector<double> p(6 * len);
    for (int h = 0; h < 6; ++h) {
      double mx = -1e300, z = 0;
      for (int t = 0; t < len; ++t) {
        double d = 0;
        for (int j = 0; j < 8; ++j) d += double(q[h * 8 + j]) * k[h / 3][t * 8 + j];
        p[h * len + t] = d / std::sqrt(8.0);
        mx = std::max(mx, p[h * len + t]);
      }
      for (int t = 0; t < len; ++t) z += (p[h * len + t] = std::exp(p[h * len + t] - mx));
      for (int t = 0; t < len; ++t) p[h * len + t] /= z;
    }
    OraclePolicy oracle(c, dims);
    std::vector<TokenSpans> spans;
    oracle.SelectTokens(step, &spans);
    const StepLayout l = MakeStepLayout(c, len);
    ASSERT_EQ(l.num_select, 3);
    for (int g = 0; g < 2; ++g) {
      std::vector<std::pair<double, int64_t>> mass;
      for (int64_t b = l.cand_begin; b < l.cand_end; ++b) {
        double m = 0;
        for (int h = 3 * g; h < 3 * g + 3; ++h)
          for (int64_t t = 4 * b; t < 4 * b + 4; ++t) m += p[h * len + t];
        mass.push_back({-m, b});
      }
      std::sort(mass.begin(), mass.end());
      std::vector<int64_t> best = {mass[0].second, mass[1].second, mass[2].second};
      EXPECT_EQ(spans[g], SpansFor(c, len, best)) << "trial " << trial;
    }
    // Recall of a streaming selection, counted directly.
    StreamingPolicy streaming(c, dims);
    streaming.SelectTokens(step, &spans);
    std::vector<float> pf(p.begin(), p.end());
    SelectionStats stats;
    MeasureStep(c, 0, 6, 2, len, pf.data(), spans, &stats);
    double want = 0;
    for (int h = 0; h < 6; ++h)
      for (auto [b, e] : spans[h / 3])
        for (int64_t t = b; t < e; ++t) want += p[h * len + t];
    EXPECT_NEAR(stats.recall(), want / 6, 1e-5);
    EXPECT_EQ(stats.recall_count, 6);
    EXPECT_EQ(stats.hit_count, 2);
    // Oracle: hit rate 1; full attention: recall 1, hit rate 1.
    SelectionStats os, fs;
    oracle.SelectTokens(step, &spans);
    MeasureStep(c, 0, 6, 2, len, pf.data(), spans, &os);
    EXPECT_DOUBLE_EQ(os.hit_rate(), 1.0);
    EXPECT_GE(os.recall() + 1e-6, stats.recall());
    MeasureStep(c, 0, 6, 2, len, pf.data(), {}, &fs);
    EXPECT_NEAR(fs.recall(), 1.0, 1e-5);
    EXPECT_DOUBLE_EQ(fs.hit_rate(), 1.0);
  }
}

TEST(MeasureStepTest, HandCountedHitRate) {
  // One KV head, one query head; block 1, sink 1, local 1, budget 4 = 2 blocks.
  SelectionConfig c;
  c.block = 1, c.sink = 1, c.local = 1, c.budget = 4;
  // len 8: candidates 1..6 (history of 7 tokens minus sink and local).
  const std::vector<float> p = {.1f, .3f, .05f, .2f, .05f, .1f, .05f, .15f};
  // True top 2 candidates: token 1 (.3), token 3 (.2). Selected: 1 and 5 -> hit 1/2.
  const TokenSpans s = SpansFor(c, 8, std::vector<int64_t>{1, 5});
  SelectionStats stats;
  MeasureStep(c, 0, 1, 1, 8, p.data(), {s}, &stats);
  EXPECT_DOUBLE_EQ(stats.hit_rate(), 0.5);
  EXPECT_NEAR(stats.recall(), .1 + .3 + .1 + .15, 1e-6);
  EXPECT_NEAR(stats.fixed_mass(), .1 + .15, 1e-6);
}

}  // namespace
}  // namespace apr::predictor
