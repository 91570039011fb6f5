// The policies inside the CPU decoder on the bundled model: full attention through the
// hooks is bit-identical to no hooks; sparse policies attend exactly the selected spans and
// stay within the budget; the measurement wrapper does not change the computation.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backends/cpu/cpu_decoder.h"
#include "predictor/cnn.h"
#include "predictor/measure.h"
#include "predictor/policy.h"

namespace apr::predictor {
namespace {

constexpr char kModel[] = "models/apr-tiny";
constexpr char kGoldenCnn[] = "predictor/testdata/cnn_golden.safetensors";

std::vector<int32_t> RandomTokens(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> d(3, 4095);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = d(rng);
  return t;
}

cpu::CpuDecoder& Decoder() {
  static cpu::CpuDecoder* d = [] {
    auto r = cpu::CpuDecoder::Load(kModel);
    if (!r.ok()) {
      ADD_FAILURE() << r.status();
      std::abort();
    }
    return r->release();
  }();
  return *d;
}

// Logits of prefill(prompt) followed by decoding `cont`, one vector per decode step.
std::vector<std::vector<float>> RunDecode(AttentionHooks* hooks, const std::vector<int32_t>& prompt,
                                          const std::vector<int32_t>& cont) {
  auto seq = Decoder().NewSequence(hooks);
  std::vector<float> logits;
  EXPECT_TRUE(Decoder().Prefill(*seq, prompt, &logits).ok());
  std::vector<std::vector<float>> out;
  for (int32_t t : cont) {
    EXPECT_TRUE(Decoder().Decode(*seq, t, &logits).ok());
    out.push_back(logits);
  }
  return out;
}

TEST(DecoderHooksTest, FullPolicyThroughHooksIsBitIdentical) {
  const auto prompt = RandomTokens(300, 1), cont = RandomTokens(24, 2);
  const auto plain = RunDecode(nullptr, prompt, cont);
  FullAttentionPolicy full(SelectionConfig(), DimsOf(Decoder().config()));
  const auto hooked = RunDecode(&full, prompt, cont);
  SelectionStats stats;
  MeasuredHooks measured(&full, &stats);
  const auto measured_logits = RunDecode(&measured, prompt, cont);
  ASSERT_EQ(plain.size(), hooked.size());
  for (size_t i = 0; i < plain.size(); ++i) {
    EXPECT_EQ(plain[i], hooked[i]) << "step " << i;
    EXPECT_EQ(plain[i], measured_logits[i]) << "step " << i;
  }
  EXPECT_NEAR(stats.recall(), 1.0, 1e-5);
  EXPECT_EQ(stats.recall_count, 24 * 6 * 6);  // steps x layers x query heads
}

// Wraps a policy and checks, at every step, that the probabilities the decoder reports
// are the softmax over exactly the selected spans.
class SpanChecker : public AttentionHooks {
 public:
  explicit SpanChecker(SelectionPolicy* p) : p_(p) {}
  void SelectTokens(const DecodeStep& step, std::vector<TokenSpans>* spans) override {
    p_->SelectTokens(step, spans);
    spans_ = *spans;
    int64_t max_tokens = 0;
    for (const auto& s : *spans) {
      int64_t n = 0;
      for (auto [b, e] : s) n += e - b;
      max_tokens = std::max(max_tokens, n);
      ASSERT_FALSE(s.empty());
      EXPECT_EQ(s.back().second, step.context_len);  // the new token is attended
    }
    EXPECT_LE(max_tokens, p_->config().budget);
    ++steps_;
  }
  void ObserveDecode(const DecodeStep& step, const float* probs) override {
    const int64_t len = step.context_len, hd = step.head_dim,
                  group = step.num_heads / step.num_kv_heads;
    for (int64_t h = 0; h < step.num_heads; ++h) {
      const TokenSpans& s = spans_[h / group];
      std::vector<double> logit(len, -INFINITY);
      double mx = -INFINITY, z = 0;
      for (auto [b, e] : s)
        for (int64_t t = b; t < e; ++t) {
          double d = 0;
          for (int64_t j = 0; j < hd; ++j)
            d += double(step.queries[h * hd + j]) * step.keys.keys(h / group)[t * hd + j];
          logit[t] = d / std::sqrt(double(hd));
          mx = std::max(mx, logit[t]);
        }
      for (int64_t t = 0; t < len; ++t) z += std::exp(logit[t] - mx);
      for (int64_t t = 0; t < len; ++t)
        ASSERT_NEAR(probs[h * len + t], std::exp(logit[t] - mx) / z, 2e-5)
            << "head " << h << " t " << t;
    }
    p_->ObserveDecode(step, probs);
  }
  bool WantsProbabilities() const override { return true; }
  int64_t PrefillRowsWanted() const override { return p_->PrefillRowsWanted(); }
  void ObservePrefill(int64_t layer, int64_t prompt_len, int64_t rows, int64_t num_heads,
                      const float* probs) override {
    p_->ObservePrefill(layer, prompt_len, rows, num_heads, probs);
  }
  int64_t steps_ = 0;

 private:
  SelectionPolicy* p_;
  std::vector<TokenSpans> spans_;
};

TEST(DecoderHooksTest, SparsePoliciesAttendExactlyTheirSpans) {
  auto cnn = PredictorCnn::Load(kGoldenCnn);  // random weights: any selection will do
  ASSERT_TRUE(cnn.ok()) << cnn.status();
  PolicyFactoryOptions o;
  o.selection.budget = 256;
  o.dims = DimsOf(Decoder().config());
  o.cnn = &*cnn;
  const auto prompt = RandomTokens(600, 3), cont = RandomTokens(20, 4);
  const auto plain = RunDecode(nullptr, prompt, cont);
  for (const std::string& name : AllPolicyNames()) {
    if (name == "full") continue;
    auto policy = MakePolicy(name, o);
    ASSERT_TRUE(policy.ok()) << policy.status();
    SpanChecker checker(policy->get());
    const auto logits = RunDecode(&checker, prompt, cont);
    EXPECT_EQ(checker.steps_, 20 * 6) << name;
    // Sparse attention changes the logits (600 tokens, budget 256), but not wildly.
    double diff = 0;
    for (size_t i = 0; i < logits.size(); ++i)
      for (size_t v = 0; v < logits[i].size(); ++v)
        diff = std::max(diff, double(std::abs(logits[i][v] - plain[i][v])));
    EXPECT_GT(diff, 0.0) << name;
  }
}

TEST(DecoderHooksTest, PredictorHistoryTracksTheContext) {
  auto cnn = PredictorCnn::Load(kGoldenCnn);
  ASSERT_TRUE(cnn.ok());
  SelectionConfig c;
  c.budget = 256;
  AttentionPredictorPolicy p(c, DimsOf(Decoder().config()), &*cnn, {5, CalibrationSource::kFull});
  const auto prompt = RandomTokens(250, 5), cont = RandomTokens(12, 6);
  RunDecode(&p, prompt, cont);
  // 250 + 12 = 262 tokens = 17 blocks; 12 decode steps, calibration at 5 and 10.
  for (int64_t l = 0; l < 6; ++l) {
    EXPECT_EQ(p.decode_steps(l), 12);
    for (int64_t g = 0; g < 2; ++g) {
      const AttentionHistory& h = p.history(l, g);
      EXPECT_EQ(h.cols(), 17);
      EXPECT_EQ(h.rows(), 64);
      // Every row is a max-pooled probability row: values in [0, 1], and the newest row
      // has a non-zero entry (the local window at least).
      float mx = 0;
      for (int64_t i = 0; i < h.rows() * h.cols(); ++i) {
        ASSERT_GE(h.data()[i], 0.0f);
        ASSERT_LE(h.data()[i], 1.0f);
      }
      for (int64_t c2 = 0; c2 < h.cols(); ++c2) mx = std::max(mx, h.at(63, c2));
      EXPECT_GT(mx, 0.0f);
    }
  }
}

// The predictor's choice at every step, recomputed independently from its history with a
// from-scratch CNN pass (the policy scores incrementally when the history only shifted).
class PredictorChecker : public AttentionHooks {
 public:
  PredictorChecker(AttentionPredictorPolicy* p, const PredictorCnn* cnn) : p_(p), cnn_(cnn) {}
  void SelectTokens(const DecodeStep& step, std::vector<TokenSpans>* spans) override {
    const StepLayout l = MakeStepLayout(p_->config(), step.context_len);
    std::vector<TokenSpans> want(step.num_kv_heads);
    for (int64_t g = 0; g < step.num_kv_heads; ++g) {
      AttentionHistory h = p_->history(step.layer, g);
      h.Widen(l.history_blocks);
      std::vector<float> scores(l.num_candidates());
      cnn_->Predict(h.data() + l.cand_begin, h.rows(), l.num_candidates(), h.cols(), scores.data(),
                    ws_);
      std::vector<int64_t> top = TopK(scores, l.num_select);
      for (int64_t& b : top) b += l.cand_begin;
      want[g] = SpansFor(p_->config(), step.context_len, top);
    }
    p_->SelectTokens(step, spans);
    EXPECT_EQ(*spans, want) << "layer " << step.layer << " len " << step.context_len;
    ++checked_;
  }
  void ObserveDecode(const DecodeStep& step, const float* probs) override {
    p_->ObserveDecode(step, probs);
  }
  bool WantsProbabilities() const override { return true; }
  int64_t PrefillRowsWanted() const override { return p_->PrefillRowsWanted(); }
  void ObservePrefill(int64_t layer, int64_t prompt_len, int64_t rows, int64_t num_heads,
                      const float* probs) override {
    p_->ObservePrefill(layer, prompt_len, rows, num_heads, probs);
  }
  int64_t checked_ = 0;

 private:
  AttentionPredictorPolicy* p_;
  const PredictorCnn* cnn_;
  CnnWorkspace ws_;
};

TEST(DecoderHooksTest, PredictorSelectionMatchesAFromScratchRecomputation) {
  auto cnn = PredictorCnn::Load(kGoldenCnn);
  ASSERT_TRUE(cnn.ok());
  SelectionConfig c;
  c.budget = 256;
  for (CalibrationSource src : {CalibrationSource::kFull, CalibrationSource::kMeanKey}) {
    AttentionPredictorPolicy p(c, DimsOf(Decoder().config()), &*cnn, {5, src});
    PredictorChecker checker(&p, &*cnn);
    // 40 steps from 500 tokens cross two block boundaries (512, 528).
    RunDecode(&checker, RandomTokens(500, 7), RandomTokens(40, 8));
    EXPECT_EQ(checker.checked_, 40 * 6);
  }
}

}  // namespace
}  // namespace apr::predictor
