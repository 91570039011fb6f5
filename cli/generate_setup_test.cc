// generate's parts below its flags (generate_setup.h), on the CPU: --device parsing and
// the errors for a bad or missing device, --attention on the CUDA decoder, the load line,
// the prefill parts, and the engine loop against Generate on models/apr-tiny.
#include "cli/generate_setup.h"

#include <gtest/gtest.h>

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "backends/cpu/cpu_decoder.h"
#include "runtime/generation.h"
#include "runtime/safetensors.h"
#include "runtime/step_engine.h"

namespace apr::generate {
namespace {

using Sparse = cluster::DecoderOptions::Sparse;

TEST(ParseDevice, TakesCpuAutoAndCudaN) {
  for (const char* d : {"cpu", "auto", "cuda:0", "cuda:1", "cuda:12"}) {
    auto p = ParseDevice(d);
    ASSERT_TRUE(p.ok()) << d << ": " << p.status();
    EXPECT_EQ(*p, d);
  }
}

TEST(ParseDevice, RefusesAnythingElseSayingWhatItTakes) {
  for (const char* d : {"", "gpu", "cuda", "cuda:", "cuda:-1", "cuda:1x", "cuda: 1", "CUDA:0",
                        "cuda:0:1", "cpu0"}) {
    auto p = ParseDevice(d);
    ASSERT_FALSE(p.ok()) << d;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(p.status().message(), absl::StrCat("--device \"", d, "\"")))
        << p.status();
    EXPECT_TRUE(absl::StrContains(p.status().message(), "expected cpu, cuda:N")) << p.status();
  }
}

TEST(CheckDeviceExists, NamesHowManyGpusTheMachineHas) {
  EXPECT_TRUE(CheckDeviceExists("cpu", 0).ok());
  EXPECT_TRUE(CheckDeviceExists("cuda:0", 1).ok());
  EXPECT_TRUE(CheckDeviceExists("cuda:1", 2).ok());
  absl::Status s = CheckDeviceExists("cuda:3", 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(), "--device cuda:3: this machine has 1 GPU (cuda:0)");
  s = CheckDeviceExists("cuda:2", 2);
  EXPECT_EQ(s.message(), "--device cuda:2: this machine has 2 GPUs (cuda:0 to cuda:1)");
  s = CheckDeviceExists("cuda:0", 0);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(s.message(), "cuda:0: this machine has no GPU")) << s;
}

AttentionFlags Flags(const std::string& name) {
  AttentionFlags f;
  f.name = name;
  f.budget = 512;
  f.calibration_step = 7;
  return f;
}

TEST(ApplyAttentionToCuda, FullIsDenseWhateverTheModelFolderHolds) {
  cluster::DecoderOptions o;
  ASSERT_TRUE(ApplyAttentionToCuda(Flags("full"), "cuda:0", &o).ok());
  EXPECT_EQ(o.sparse, Sparse::kOff);
}

TEST(ApplyAttentionToCuda, PredictorVariantsPickTheirCalibration) {
  cluster::DecoderOptions o;
  ASSERT_TRUE(ApplyAttentionToCuda(Flags("predictor"), "cuda:0", &o).ok());
  EXPECT_EQ(o.sparse, Sparse::kOn);
  EXPECT_EQ(o.budget_tokens, 512);
  EXPECT_TRUE(o.full_row_calibration);  // exact rows, as the CPU policy "predictor"
  EXPECT_EQ(o.calibration_step, 7);

  cluster::DecoderOptions c;
  ASSERT_TRUE(ApplyAttentionToCuda(Flags("predictor-center"), "cuda:0", &c).ok());
  EXPECT_EQ(c.sparse, Sparse::kOn);
  EXPECT_FALSE(c.full_row_calibration);  // key summaries, as the served worker
  EXPECT_EQ(c.calibration_step, 7);

  cluster::DecoderOptions n;
  AttentionFlags f = Flags("predictor-nocal");
  f.predictor_path = "/tmp/p.safetensors";
  ASSERT_TRUE(ApplyAttentionToCuda(f, "cuda:1", &n).ok());
  EXPECT_EQ(n.sparse, Sparse::kOn);
  EXPECT_EQ(n.calibration_step, 0);
  EXPECT_EQ(n.predictor_path, "/tmp/p.safetensors");

  cluster::DecoderOptions h;
  ASSERT_TRUE(ApplyAttentionToCuda(Flags("predictor-hybrid"), "cuda:0", &h).ok());
  EXPECT_EQ(h.sparse, Sparse::kOn);
  EXPECT_TRUE(h.hybrid);                // a quarter of the blocks by the query's Quest bound
  EXPECT_TRUE(h.full_row_calibration);  // exact rows, as the CPU policy "predictor-hybrid"
  EXPECT_FALSE(c.hybrid);
}

TEST(ApplyAttentionToCuda, CpuPoliciesFailNamingThePolicyAndWhatTheGpuRuns) {
  for (const char* name : {"h2o", "snapkv", "quest", "oracle", "streaming", "predictor-quest",
                           "predictor-mean"}) {
    cluster::DecoderOptions o;
    absl::Status s = ApplyAttentionToCuda(Flags(name), "cuda:0", &o);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_TRUE(absl::StrContains(s.message(), absl::StrCat("--attention ", name, " is a CPU")))
        << s;
    EXPECT_TRUE(absl::StrContains(s.message(),
                                  "on cuda:0 runs --attention full, predictor, predictor-center, "
                                  "predictor-hybrid, predictor-nocal"))
        << s;
  }
  cluster::DecoderOptions o;
  EXPECT_TRUE(absl::StrContains(ApplyAttentionToCuda(Flags("bogus"), "cuda:0", &o).message(),
                                "unknown --attention \"bogus\""));
  AttentionFlags small = Flags("predictor");
  small.budget = 100;
  EXPECT_TRUE(absl::StrContains(ApplyAttentionToCuda(small, "cuda:0", &o).message(), "--budget"));
}

TEST(LoadingLine, CountsTheModelsTensorsNotThePredictors) {
  auto line = LoadingLine("models/apr-tiny");
  ASSERT_TRUE(line.ok()) << line.status();
  auto model = SafetensorsFile::Open("models/apr-tiny/model.safetensors");
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(*line, absl::StrCat("loading models/apr-tiny: ", (*model)->tensors().size(),
                                " tensors, 0.02 GiB"));
  EXPECT_FALSE(LoadingLine("/nonexistent/model").ok());
}

TEST(PrefillPartEnds, ChunksWithTheSchedulersTailRule) {
  EXPECT_EQ(PrefillPartEnds(10, 0), (std::vector<int64_t>{10}));
  EXPECT_EQ(PrefillPartEnds(10, 8192), (std::vector<int64_t>{10}));
  EXPECT_EQ(PrefillPartEnds(32768, 8192), (std::vector<int64_t>{8192, 16384, 24576, 32768}));
  EXPECT_EQ(PrefillPartEnds(20000, 8192), (std::vector<int64_t>{8192, 16384, 20000}));
  // A tail shorter than the predictor's 64 history rows joins the part before it.
  EXPECT_EQ(PrefillPartEnds(8192 + 60, 8192), (std::vector<int64_t>{8252}));
}

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = cpu::CpuDecoder::Load("models/apr-tiny");
    ASSERT_TRUE(d.ok()) << d.status();
    decoder_ = *std::move(d);
    for (int i = 0; i < 300; ++i) prompt_.push_back(static_cast<int32_t>((i * 37 + 11) % 4000));
  }
  GenerationResult Reference(const GenerationOptions& o) {
    auto seq = decoder_->NewSequence();
    auto r = Generate(*decoder_, *seq, prompt_, o, nullptr);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : GenerationResult{};
  }
  std::unique_ptr<cpu::CpuDecoder> decoder_;
  std::vector<int32_t> prompt_;
};

TEST_F(EngineTest, SamplesAsGenerateDoesGreedyAndSampled) {
  for (float temperature : {0.0f, 0.9f}) {
    EngineGeneration run;
    run.generation.max_new_tokens = 24;
    run.generation.sampling = {temperature, 0, 0.95f, 7};
    DecoderStepEngine engine(*decoder_);
    auto got = GenerateOnEngine(engine, prompt_, run, nullptr);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->tokens, Reference(run.generation).tokens) << "temperature " << temperature;
    EXPECT_EQ(got->stop, StopReason::kMaxTokens);
    EXPECT_EQ(got->prompt_tokens, 300);
    EXPECT_EQ(engine.live_sequences(), 0);
  }
}

TEST_F(EngineTest, PrefillsInPartsReportingEach) {
  EngineGeneration run;
  run.generation.max_new_tokens = 16;
  run.generation.sampling.temperature = 0;
  run.prefill_chunk = 128;
  std::vector<int64_t> seen;
  run.on_prefill = [&](int64_t done, int64_t total) {
    EXPECT_EQ(total, 300);
    seen.push_back(done);
  };
  DecoderStepEngine engine(*decoder_);
  auto got = GenerateOnEngine(engine, prompt_, run, nullptr);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(seen, (std::vector<int64_t>{128, 300}));  // 44 left after 256: joins
  EXPECT_EQ(got->tokens, Reference(run.generation).tokens);
}

TEST_F(EngineTest, StopsAsGenerateDoes) {
  EngineGeneration run;
  run.generation.sampling.temperature = 0;
  run.generation.max_new_tokens = 0;
  DecoderStepEngine engine(*decoder_);
  auto none = GenerateOnEngine(engine, prompt_, run, nullptr);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->tokens.empty());

  run.generation.max_new_tokens = 8;
  const int32_t first = Reference(run.generation).tokens.at(0);
  run.generation.stop_token_ids = {first};
  auto stopped = GenerateOnEngine(engine, prompt_, run, nullptr);
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(stopped->tokens, (std::vector<int32_t>{first}));
  EXPECT_EQ(stopped->stop, StopReason::kStopToken);

  run.generation.stop_token_ids.clear();
  int calls = 0;
  auto cancelled = GenerateOnEngine(engine, prompt_, run, [&](int32_t) { return ++calls < 3; });
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->tokens.size(), 3u);
  EXPECT_EQ(cancelled->stop, StopReason::kCancelled);
  EXPECT_EQ(engine.live_sequences(), 0);
}

TEST_F(EngineTest, StopsWhenTheContextIsFull) {
  // apr-tiny's context is 4096: a 4090-token prompt leaves room for 6 more tokens in the
  // cache, so the 7th sampled token ends it, as in Generate.
  prompt_.clear();
  for (int i = 0; i < 4090; ++i) prompt_.push_back(static_cast<int32_t>((i * 13 + 5) % 4000));
  EngineGeneration run;
  run.generation.sampling.temperature = 0;
  run.generation.max_new_tokens = 20;
  run.prefill_chunk = 2048;
  DecoderStepEngine engine(*decoder_);
  auto got = GenerateOnEngine(engine, prompt_, run, nullptr);
  ASSERT_TRUE(got.ok()) << got.status();
  const GenerationResult want = Reference(run.generation);
  EXPECT_EQ(got->stop, StopReason::kContextFull);
  EXPECT_EQ(want.stop, StopReason::kContextFull);
  EXPECT_EQ(got->tokens.size(), 7u);
  EXPECT_EQ(got->tokens.size(), want.tokens.size());
}

}  // namespace
}  // namespace apr::generate
