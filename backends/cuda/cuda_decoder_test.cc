// The CUDA decoder end to end: logits against the transformers golden files and against
// the CPU reference decoder, batched decode against single-sequence decode, graphs / cuBLAS
// / prefill chunking against the plain paths, and sparse decode against the CPU decoder
// attending to the very blocks the GPU predictor chose. GPU machine only (tag "gpu").
//
// Tolerance: the CUDA path runs bf16 weights and activations (float32 accumulation), the
// references float32/float64 weights, so logits differ by bf16 rounding through every layer:
// relative L2 error per position under the tolerances below, and the same argmax wherever the
// reference's top two logits are clearly apart.
#include "backends/cuda/cuda_decoder.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "backends/cpu/cpu_decoder.h"
#include "backends/cuda/block_rules.h"
#include "backends/cuda/family_checkpoint.h"
#include "backends/cuda/predictor/predictor_weights.h"
#include "runtime/safetensors.h"
#include "runtime/testing/safetensors_writer.h"

namespace apr::cuda {
namespace {

// The tiny random checkpoints have deliberately large activations (peaked logits), which
// amplify bf16 rounding (measured worst 3.6e-2 on the H100); the trained model sits near
// 5e-3 (measured: golden 4.9e-3, against the CPU decoder 5.4e-3), so it gets ~3x margin.
constexpr double kRandomModelTol = 5e-2;
constexpr double kModelTol = 1.5e-2;  // models/apr-tiny
// tiny-llama-longrope's attention factor (sqrt(1.5)) scales q.k by 1.5, and one position of
// its 40-token prompt (26) is far more sensitive to rounding than the rest: the H100 gave
// 9.2e-2 there (every other position and prompt <= 4.2e-2) with the arg max unchanged.
// tools/goldens/bf16_sensitivity.py, a float32 forward with bf16 rounding at the backend's
// storage points, also peaks at position 26 (4.2e-2; weights alone 2.7e-2), and the same
// rounding gives 5.7e-2 on tiny-llama-yarn where the H100 gave 2.3e-2: different legitimate
// roundings land a factor of 2 apart on these random models. The CPU reference matches this
// golden within 4.3e-6, so the RoPE formulas are right; the GPU family test compares the
// same longrope tables against the CPU decoder at 1.2e-2 on other weights.
constexpr double kLongRopeTol = 1.2e-1;

struct Case {
  std::string golden;
  std::string model;
  double tol;
};

const Case kCases[] = {
    {"tests/golden/tiny-llama3.logits.safetensors", "tests/golden/models/tiny-llama3",
     kRandomModelTol},
    {"tests/golden/tiny-mistral.logits.safetensors", "tests/golden/models/tiny-mistral",
     kRandomModelTol},
    {"tests/golden/apr-tiny.logits.safetensors", "models/apr-tiny", kModelTol},
    // Issue 20: one model per family / RoPE variant.
    {"tests/golden/tiny-qwen2.logits.safetensors", "tests/golden/models/tiny-qwen2",
     kRandomModelTol},
    {"tests/golden/tiny-qwen3.logits.safetensors", "tests/golden/models/tiny-qwen3",
     kRandomModelTol},
    {"tests/golden/tiny-mistral-sliding.logits.safetensors",
     "tests/golden/models/tiny-mistral-sliding", kRandomModelTol},
    {"tests/golden/tiny-llama-yarn.logits.safetensors", "tests/golden/models/tiny-llama-yarn",
     kRandomModelTol},
    {"tests/golden/tiny-llama-dynamic.logits.safetensors", "tests/golden/models/tiny-llama-dynamic",
     kRandomModelTol},
    {"tests/golden/tiny-llama-longrope.logits.safetensors",
     "tests/golden/models/tiny-llama-longrope", kLongRopeTol},
    {"tests/golden/tiny-llama32-tied.logits.safetensors", "tests/golden/models/tiny-llama32-tied",
     kRandomModelTol},
};

struct Prompt {
  std::vector<int32_t> ids;
  std::vector<int64_t> positions;
  const float* logits;
};

std::vector<Prompt> ReadPrompts(const SafetensorsFile& f) {
  std::vector<Prompt> out;
  for (int i = 0;; ++i) {
    const TensorView* ids = f.Find(absl::StrCat("p", i, ".ids"));
    if (ids == nullptr) break;
    Prompt p;
    const auto* id64 = reinterpret_cast<const int64_t*>(ids->data);
    p.ids.assign(id64, id64 + ids->numel());
    const TensorView* pos = f.Find(absl::StrCat("p", i, ".positions"));
    const auto* pos64 = reinterpret_cast<const int64_t*>(pos->data);
    p.positions.assign(pos64, pos64 + pos->numel());
    p.logits = reinterpret_cast<const float*>(f.Find(absl::StrCat("p", i, ".logits"))->data);
    out.push_back(std::move(p));
  }
  return out;
}

double RelErr(const float* got, const float* want, int64_t n) {
  double d = 0, r = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    d += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    r += double(want[i]) * want[i];
  }
  return std::sqrt(d / r);
}

// False when the reference has a clear winner (top-1 minus top-2 above a tenth of the
// logits' RMS) and `got` picks another token.
bool ArgmaxAgrees(const float* got, const float* want, int64_t n) {
  const int64_t g = std::max_element(got, got + n) - got;
  const int64_t w = std::max_element(want, want + n) - want;
  if (g == w) return true;
  double rms = 0, second = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    rms += double(want[i]) * want[i];
    if (i != w) second = std::max(second, double(want[i]));
  }
  rms = std::sqrt(rms / n);
  return want[w] - second < 0.1 * rms;
}

CudaDecoderOptions SmallOptions() {
  CudaDecoderOptions o;
  o.max_sequences = 4;
  o.prefill_chunk = 256;
  return o;
}

class CudaGolden : public ::testing::TestWithParam<Case> {};

TEST_P(CudaGolden, PrefillAndDecodeMatchTransformers) {
  const Case& c = GetParam();
  auto golden = SafetensorsFile::Open(c.golden);
  ASSERT_TRUE(golden.ok()) << golden.status();
  auto decoder = CudaDecoder::Load(c.model, SmallOptions());
  ASSERT_TRUE(decoder.ok()) << decoder.status();
  const int64_t vocab = (*decoder)->config().vocab_size;
  for (const Prompt& p : ReadPrompts(**golden)) {
    const int64_t n = static_cast<int64_t>(p.ids.size());
    auto seq = (*decoder)->NewSequence();
    std::vector<float> last, all;
    ASSERT_TRUE((*decoder)->Prefill(*seq, p.ids, &last, &all).ok());
    double worst = 0;
    for (size_t k = 0; k < p.positions.size(); ++k) {
      const float* got = &all[p.positions[k] * vocab];
      const double e = RelErr(got, p.logits + k * vocab, vocab);
      worst = std::max(worst, e);
      EXPECT_LE(e, c.tol) << c.golden << " prefill position " << p.positions[k];
      EXPECT_TRUE(ArgmaxAgrees(got, p.logits + k * vocab, vocab))
          << c.golden << " prefill position " << p.positions[k];
    }
    const int64_t split = n > 128 ? n - 64 : std::max<int64_t>(1, n / 2);
    auto dseq = (*decoder)->NewSequence();
    std::vector<float> logits;
    ASSERT_TRUE(
        (*decoder)->Prefill(*dseq, absl::MakeConstSpan(p.ids).subspan(0, split), &logits).ok());
    double worst_decode = 0;
    for (int64_t pos = split - 1; pos < n; ++pos) {
      if (pos > split - 1) {
        ASSERT_TRUE((*decoder)->Decode(*dseq, p.ids[pos], &logits).ok());
      }
      for (size_t k = 0; k < p.positions.size(); ++k) {
        if (p.positions[k] != pos) continue;
        const double e = RelErr(logits.data(), p.logits + k * vocab, vocab);
        worst_decode = std::max(worst_decode, e);
        EXPECT_LE(e, c.tol) << c.golden << " decode position " << pos;
        EXPECT_TRUE(ArgmaxAgrees(logits.data(), p.logits + k * vocab, vocab))
            << c.golden << " decode position " << pos;
      }
    }
    std::printf("%s (%ld tokens): worst relative error prefill %.2e decode %.2e\n",
                c.golden.c_str(), long(n), worst, worst_decode);
  }
}

INSTANTIATE_TEST_SUITE_P(AllModels, CudaGolden, ::testing::ValuesIn(kCases), [](const auto& info) {
  std::string m = info.param.model.substr(info.param.model.rfind('/') + 1);
  for (char& ch : m) {
    if (ch == '-') ch = '_';
  }
  return m;
});

std::vector<int32_t> RandomTokens(int n, int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = static_cast<int32_t>(rng() % vocab);
  return t;
}

// The apr-tiny golden prompt (real text, 2048 tokens).
std::vector<int32_t> RealTokens() {
  auto golden = SafetensorsFile::Open("tests/golden/apr-tiny.logits.safetensors");
  if (!golden.ok()) return {};
  return ReadPrompts(**golden)[1].ids;
}

TEST(CudaDecoder, MatchesCpuDecoderPrefillAndDecode) {
  auto cpu = cpu::CpuDecoder::Load("models/apr-tiny");
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  auto gpu = CudaDecoder::Load("models/apr-tiny", SmallOptions());
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  const std::vector<int32_t> real = RealTokens();
  ASSERT_GE(real.size(), 400u);
  const std::vector<int32_t> prompt(real.begin(), real.begin() + 300);
  auto cs = (*cpu)->NewSequence();
  auto gs = (*gpu)->NewSequence();
  std::vector<float> cl, gl;
  ASSERT_TRUE((*cpu)->Prefill(*cs, prompt, &cl).ok());
  ASSERT_TRUE((*gpu)->Prefill(*gs, prompt, &gl).ok());
  const int64_t vocab = (*cpu)->config().vocab_size;
  double worst = RelErr(gl.data(), cl.data(), vocab);
  EXPECT_LE(worst, kModelTol) << "prefill";
  for (int i = 300; i < 340; ++i) {
    ASSERT_TRUE((*cpu)->Decode(*cs, real[i], &cl).ok());
    ASSERT_TRUE((*gpu)->Decode(*gs, real[i], &gl).ok());
    const double e = RelErr(gl.data(), cl.data(), vocab);
    worst = std::max(worst, e);
    EXPECT_LE(e, kModelTol) << "decode step " << i;
    EXPECT_TRUE(ArgmaxAgrees(gl.data(), cl.data(), vocab)) << "decode step " << i;
  }
  std::printf("apr-tiny, CUDA vs CPU decoder: worst relative error %.2e\n", worst);
}

// --- Issue 20: each family and RoPE variant against the CPU decoder on one random bf16
// checkpoint (family_checkpoint.h); the sizes below are the checkpoint's. ---

// A sequence: its prompt [0, prompt) prefilled, then decoded one token a step to `total`.
struct Run {
  int prompt, total;
};

// Every prefill position and decode step of `runs`, CUDA against CPU within
// kRandomModelTol; the runs decode together, one CUDA batch a step (each sequence at its
// own length), prompts in 64-token chunks (a window, RoPE tables across chunks).
void ExpectMatchesCpu(const std::string& dir, const std::vector<Run>& runs, const char* what) {
  auto cpu = cpu::CpuDecoder::Load(dir);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  CudaDecoderOptions o = SmallOptions();
  o.prefill_chunk = 64;
  auto gpu = CudaDecoder::Load(dir, o);
  ASSERT_TRUE(gpu.ok()) << what << ": " << gpu.status();
  const int64_t vocab = (*cpu)->config().vocab_size;
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::unique_ptr<Sequence>> cs, gs;
  double worst = 0;
  int longest = 0;
  for (const Run& r : runs) {
    tokens.push_back(RandomTokens(r.total, static_cast<int>(vocab), 1000 + r.prompt));
    const auto prompt = absl::MakeConstSpan(tokens.back()).subspan(0, r.prompt);
    cs.push_back((*cpu)->NewSequence());
    gs.push_back((*gpu)->NewSequence());
    std::vector<float> cl, gl, call, gall;
    ASSERT_TRUE((*cpu)->Prefill(*cs.back(), prompt, &cl, &call).ok());
    ASSERT_TRUE((*gpu)->Prefill(*gs.back(), prompt, &gl, &gall).ok());
    for (int i = 0; i < r.prompt; ++i) {
      const double e = RelErr(&gall[i * vocab], &call[i * vocab], vocab);
      worst = std::max(worst, e);
      EXPECT_LE(e, kRandomModelTol) << what << ": prefill of " << r.prompt << ", position " << i;
      EXPECT_TRUE(ArgmaxAgrees(&gall[i * vocab], &call[i * vocab], vocab))
          << what << ": prefill of " << r.prompt << ", position " << i;
    }
    longest = std::max(longest, r.total - r.prompt);
  }
  for (int s = 0; s < longest; ++s) {
    std::vector<Sequence*> batch;
    std::vector<int32_t> next;
    std::vector<size_t> which;
    for (size_t k = 0; k < runs.size(); ++k) {
      if (runs[k].prompt + s >= runs[k].total) continue;
      batch.push_back(gs[k].get());
      next.push_back(tokens[k][runs[k].prompt + s]);
      which.push_back(k);
    }
    std::vector<float> gl, cl;
    ASSERT_TRUE((*gpu)->DecodeBatch(batch, next, &gl).ok());
    for (size_t b = 0; b < which.size(); ++b) {
      ASSERT_TRUE((*cpu)->Decode(*cs[which[b]], next[b], &cl).ok());
      const double e = RelErr(&gl[b * vocab], cl.data(), vocab);
      worst = std::max(worst, e);
      const int pos = runs[which[b]].prompt + s;
      EXPECT_LE(e, kRandomModelTol) << what << ": decode at position " << pos;
      EXPECT_TRUE(ArgmaxAgrees(&gl[b * vocab], cl.data(), vocab))
          << what << ": decode at position " << pos;
    }
  }
  std::printf("%s, CUDA vs CPU decoder: worst relative error %.2e\n", what, worst);
}

std::string WriteFamily(const testutil::TempDir& dir, const testutil::FamilyCheckpoint& f) {
  absl::Status s = testutil::WriteFamilyCheckpoint(f, dir.path());
  EXPECT_TRUE(s.ok()) << s;
  return dir.path();
}

TEST(CudaFamilies, Qwen2BiasesMatchCpuDecoder) {
  testutil::TempDir dir;
  testutil::FamilyCheckpoint f;
  f.model_type = "qwen2";
  ExpectMatchesCpu(WriteFamily(dir, f), {{150, 190}, {37, 60}}, "qwen2");
}

TEST(CudaFamilies, Qwen3QkNormsMatchCpuDecoder) {
  testutil::TempDir dir;
  testutil::FamilyCheckpoint f;
  f.model_type = "qwen3";  // q/k projections 4x larger: only the norms bring them back
  ExpectMatchesCpu(WriteFamily(dir, f), {{150, 190}, {37, 60}}, "qwen3");
}

TEST(CudaFamilies, YarnMatchesCpuDecoderPastTheOriginalLength) {
  testutil::TempDir dir;
  testutil::FamilyCheckpoint f;
  f.rope_scaling_json =
      R"({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64})";
  ExpectMatchesCpu(WriteFamily(dir, f), {{200, 260}, {30, 90}}, "yarn");
}

TEST(CudaFamilies, DynamicNtkMatchesCpuDecoderUpToMaxPositions) {
  testutil::TempDir dir;
  testutil::FamilyCheckpoint f;
  f.max_position_embeddings = 256;  // the decoders' limit: dynamic NTK's base never grows
  f.rope_scaling_json = R"({"rope_type": "dynamic", "factor": 2.0})";
  ExpectMatchesCpu(WriteFamily(dir, f), {{200, 256}}, "dynamic");
}

// Short factors while a forward pass ends within 64 tokens, long ones after: a prompt of 40
// decoding across 64 (keys before it keep their short rotation), a prompt of 100 whose
// chunks [0, 64) and [64, 100) both take the long factors, in one batch.
TEST(CudaFamilies, LongRopeMatchesCpuDecoderAcrossTheOriginalLength) {
  testutil::TempDir dir;
  testutil::FamilyCheckpoint f;
  f.rope_scaling_json = testutil::LongRopeScalingJson(64);
  ExpectMatchesCpu(WriteFamily(dir, f), {{40, 120}, {100, 140}, {64, 66}}, "longrope");
}

// Keys (p - 48, p]: prompts and decodes well past the window, chunks across it.
TEST(CudaFamilies, MistralSlidingWindowMatchesCpuDecoder) {
  testutil::TempDir dir;
  testutil::FamilyCheckpoint f;
  f.model_type = "mistral";
  f.sliding_window = 48;
  ExpectMatchesCpu(WriteFamily(dir, f), {{200, 260}, {20, 100}}, "mistral sliding window");
}

TEST(CudaFamilies, SlidingWindowRefusesSparseAttention) {
  testutil::TempDir dir;
  testutil::FamilyCheckpoint f;
  f.model_type = "mistral";
  f.sliding_window = 48;
  CudaDecoderOptions o = SmallOptions();
  o.max_budget_tokens = 256;  // sparse-capable without predictor weights: refused first
  auto gpu = CudaDecoder::Load(WriteFamily(dir, f), o);
  ASSERT_FALSE(gpu.ok());
  EXPECT_EQ(gpu.status().code(), absl::StatusCode::kUnimplemented) << gpu.status();
  EXPECT_NE(gpu.status().message().find("sliding_window (48)"), std::string::npos) << gpu.status();
}

// Decoding several sequences of different lengths in one batch gives each the logits it
// gets alone (GEMV and attention treat batch entries independently).
TEST(CudaDecoder, BatchedDecodeEqualsSingle) {
  auto gpu = CudaDecoder::Load("models/apr-tiny", SmallOptions());
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  CudaDecoder& d = **gpu;
  const int vocab = static_cast<int>(d.config().vocab_size);
  const std::vector<int> lens = {5, 40, 130};
  std::vector<std::vector<int32_t>> toks;
  for (size_t i = 0; i < lens.size(); ++i)
    toks.push_back(RandomTokens(lens[i] + 12, vocab, 20 + i));
  // Alone.
  std::vector<std::vector<std::vector<float>>> alone(lens.size());
  for (size_t i = 0; i < lens.size(); ++i) {
    auto s = d.NewSequence();
    std::vector<float> l;
    ASSERT_TRUE(d.Prefill(*s, absl::MakeConstSpan(toks[i]).subspan(0, lens[i]), &l).ok());
    for (int t = 0; t < 12; ++t) {
      ASSERT_TRUE(d.Decode(*s, toks[i][lens[i] + t], &l).ok());
      alone[i].push_back(l);
    }
  }
  // Together.
  std::vector<std::unique_ptr<Sequence>> seqs;
  std::vector<Sequence*> ptrs;
  for (size_t i = 0; i < lens.size(); ++i) {
    seqs.push_back(d.NewSequence());
    ptrs.push_back(seqs.back().get());
    std::vector<float> l;
    ASSERT_TRUE(d.Prefill(*seqs.back(), absl::MakeConstSpan(toks[i]).subspan(0, lens[i]), &l).ok());
  }
  double worst = 0;
  for (int t = 0; t < 12; ++t) {
    std::vector<int32_t> step;
    for (size_t i = 0; i < lens.size(); ++i) step.push_back(toks[i][lens[i] + t]);
    std::vector<float> l;
    ASSERT_TRUE(d.DecodeBatch(ptrs, step, &l).ok());
    for (size_t i = 0; i < lens.size(); ++i)
      worst = std::max(worst, RelErr(&l[i * vocab], alone[i][t].data(), vocab));
  }
  // The flash-decoding split count depends on the batch, so summation orders (and bf16
  // roundings of the attention output) may differ slightly.
  EXPECT_LE(worst, 1e-2);
  std::printf("batched vs single decode: worst relative difference %.2e\n", worst);
}

// Runs `prompt` then `steps` tokens through a decoder with `opt`; returns every step's
// logits (prefill's last first).
std::vector<std::vector<float>> RunModel(const CudaDecoderOptions& opt,
                                         const std::vector<int32_t>& toks, int prompt, int steps) {
  auto gpu = CudaDecoder::Load("models/apr-tiny", opt);
  EXPECT_TRUE(gpu.ok()) << gpu.status();
  if (!gpu.ok()) return {};
  auto s = (*gpu)->NewSequence();
  std::vector<std::vector<float>> out(1);
  EXPECT_TRUE((*gpu)->Prefill(*s, absl::MakeConstSpan(toks).subspan(0, prompt), &out[0]).ok());
  for (int t = 0; t < steps; ++t) {
    out.emplace_back();
    EXPECT_TRUE((*gpu)->Decode(*s, toks[prompt + t], &out.back()).ok());
  }
  return out;
}

double WorstDiff(const std::vector<std::vector<float>>& a,
                 const std::vector<std::vector<float>>& b) {
  double worst = 0;
  EXPECT_EQ(a.size(), b.size());
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    worst = std::max(worst, RelErr(a[i].data(), b[i].data(), static_cast<int64_t>(b[i].size())));
  return worst;
}

TEST(CudaDecoder, GraphsCublasAndChunkingAgree) {
  const std::vector<int32_t> toks = RealTokens();
  ASSERT_GE(toks.size(), 700u);
  CudaDecoderOptions base = SmallOptions();
  const auto ref = RunModel(base, toks, 600, 10);
  CudaDecoderOptions no_graphs = base;
  no_graphs.use_graphs = false;
  const double g = WorstDiff(RunModel(no_graphs, toks, 600, 10), ref);
  EXPECT_LE(g, 1e-6) << "graphs";
  CudaDecoderOptions no_pdl = base;
  no_pdl.use_pdl = false;
  const double p = WorstDiff(RunModel(no_pdl, toks, 600, 10), ref);
  EXPECT_LE(p, 1e-6) << "programmatic dependent launch";
  CudaDecoderOptions chunked = base;
  chunked.prefill_chunk = 7;  // GEMV-sized chunks, many attention passes
  const double c = WorstDiff(RunModel(chunked, toks, 600, 10), ref);
  EXPECT_LE(c, 1e-2) << "prefill chunking";
  CudaDecoderOptions cublas = base;
  cublas.use_gemv = false;
  const double b = WorstDiff(RunModel(cublas, toks, 600, 10), ref);
  EXPECT_LE(b, kModelTol) << "cuBLAS decode projections";
  std::printf("graphs %.2e, PDL %.2e, prefill chunk 7 %.2e, cuBLAS decode %.2e\n", g, p, c, b);
}

// Selects, per layer and KV head, the tokens the GPU attended (lists[layer][g]: blocks and
// the first token in each); empty lists mean full attention.
class FixedBlocks : public AttentionHooks {
 public:
  std::vector<std::vector<CudaDecoder::BlockList>> lists;  // [layer][kv head]
  void SelectTokens(const DecodeStep& step, std::vector<TokenSpans>* spans) override {
    const auto& l = lists[step.layer];
    if (l.empty() || l[0].empty()) return;
    spans->resize(step.num_kv_heads);
    for (int64_t g = 0; g < step.num_kv_heads; ++g)
      for (const auto& [b, first] : l[g]) {
        const int64_t t0 = int64_t{b} * kBlockTokens + first;
        const int64_t t1 =
            std::min<int64_t>(int64_t{b} * kBlockTokens + kBlockTokens, step.context_len);
        auto& s = (*spans)[g];
        if (!s.empty() && s.back().second == t0) {
          s.back().second = t1;
        } else {
          s.push_back({t0, t1});
        }
      }
  }
  void ObserveDecode(const DecodeStep&, const float*) override {}
  bool WantsProbabilities() const override { return false; }
  int64_t PrefillRowsWanted() const override { return 0; }
  void ObservePrefill(int64_t, int64_t, int64_t, int64_t, const float*) override {}
};

TEST(CudaDecoder, SparseDecodeMatchesCpuOnTheSameBlocks) {
  const std::vector<int32_t> toks = RealTokens();
  ASSERT_GE(toks.size(), 1000u);
  const int prompt = 900, steps = 9, budget = 256, k = PredictedBlocks(budget);
  CudaDecoderOptions o = SmallOptions();
  o.sparse.enabled = true;
  o.sparse.budget_tokens = budget;
  o.sparse.calibration_step = 4;
  o.sparse.dense_layers = 1;
  o.predictor_weights = RandomPredictorWeights(6);
  auto gpu = CudaDecoder::Load("models/apr-tiny", o);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  auto cpu = cpu::CpuDecoder::Load("models/apr-tiny");
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  FixedBlocks hooks;
  const int L = static_cast<int>((*gpu)->config().num_hidden_layers);
  const int nkv = static_cast<int>((*gpu)->config().num_key_value_heads);
  hooks.lists.resize(L);
  auto gs = (*gpu)->NewSequence();
  auto cs = (*cpu)->NewSequence(&hooks);
  std::vector<float> gl, cl;
  ASSERT_TRUE((*gpu)->Prefill(*gs, absl::MakeConstSpan(toks).subspan(0, prompt), &gl).ok());
  ASSERT_TRUE((*cpu)->Prefill(*cs, absl::MakeConstSpan(toks).subspan(0, prompt), &cl).ok());
  const int64_t vocab = (*gpu)->config().vocab_size;
  double worst = 0;
  for (int t = 0; t < steps; ++t) {
    ASSERT_TRUE((*gpu)->Decode(*gs, toks[prompt + t], &gl).ok());
    const int len = prompt + t + 1;
    for (int l = 0; l < L; ++l) {
      hooks.lists[l].clear();
      if (l < o.sparse.dense_layers) continue;
      auto lists = (*gpu)->LastBlockLists(l);
      ASSERT_TRUE(lists.ok()) << lists.status();
      ASSERT_EQ(lists->size(), 1u);
      hooks.lists[l] = (*lists)[0];
      // The rules of docs/PREDICTOR.md: sink tokens, the token-exact local window, and
      // exactly min(k, candidates) whole candidate blocks.
      for (int g = 0; g < nkv; ++g) {
        const auto& b = (*lists)[0][g];
        ASSERT_FALSE(b.empty());
        for (size_t i = 1; i < b.size(); ++i) ASSERT_LT(b[i - 1].first, b[i].first);
        for (int i = 0; i < kSinkBlocks; ++i) ASSERT_EQ(b[i], std::make_pair(i, 0));
        ASSERT_EQ(b.back().first, NumBlocks(len) - 1);
        int chosen = 0;
        for (const auto& [blk, first] : b) {
          if (blk >= kSinkBlocks && blk < kSinkBlocks + NumCandidates(len) && first == 0) ++chosen;
          if (blk >= kSinkBlocks + NumCandidates(len) || blk < kSinkBlocks) {
            // Not a candidate: sink or local window, from its first local token.
            const int want = blk == FirstLocalBlock(len) && blk >= kSinkBlocks
                                 ? LocalStart(len) % kBlockTokens
                                 : 0;
            ASSERT_EQ(first, want) << "block " << blk << " len " << len;
          }
        }
        ASSERT_EQ(chosen, KeptCandidates(len, k)) << "layer " << l << " len " << len;
      }
    }
    ASSERT_TRUE((*cpu)->Decode(*cs, toks[prompt + t], &cl).ok());
    const double e = RelErr(gl.data(), cl.data(), vocab);
    worst = std::max(worst, e);
    EXPECT_LE(e, kModelTol) << "step " << t;
    EXPECT_TRUE(ArgmaxAgrees(gl.data(), cl.data(), vocab)) << "step " << t;
  }
  std::printf("sparse decode (budget %d) vs CPU on the same blocks: worst relative error %.2e\n",
              budget, worst);
}

// The incremental CNN (column sums updated by the window's edge rows) selects the blocks
// the full recomputation selects.
TEST(CudaDecoder, IncrementalPredictorSelectsLikeFullRecomputation) {
  const std::vector<int32_t> toks = RealTokens();
  ASSERT_GE(toks.size(), 1400u);
  const int prompt = 1300, steps = 40;
  // Modes: 0 incremental, predictor overlapped on the side stream (the defaults); 1 full
  // recomputation; 2 incremental on the main stream (must equal mode 0 exactly).
  std::vector<std::vector<std::vector<CudaDecoder::BlockList>>> lists[3];  // [mode][step][layer]
  for (int mode = 0; mode < 3; ++mode) {
    CudaDecoderOptions o = SmallOptions();
    o.sparse.enabled = true;
    o.sparse.budget_tokens = 512;
    o.sparse.calibration_step = 7;
    o.incremental_predictor = mode != 1;
    o.overlap_predictor_max_batch = mode != 2 ? 1 : 0;
    o.predictor_weights = RandomPredictorWeights(8);
    auto gpu = CudaDecoder::Load("models/apr-tiny", o);
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    auto s = (*gpu)->NewSequence();
    std::vector<float> l;
    ASSERT_TRUE((*gpu)->Prefill(*s, absl::MakeConstSpan(toks).subspan(0, prompt), &l).ok());
    for (int t = 0; t < steps; ++t) {
      ASSERT_TRUE((*gpu)->Decode(*s, toks[prompt + t], &l).ok());
      lists[mode].emplace_back();
      for (int layer = 0; layer < static_cast<int>((*gpu)->config().num_hidden_layers); ++layer) {
        auto b = (*gpu)->LastBlockLists(layer);
        ASSERT_TRUE(b.ok()) << b.status();
        lists[mode].back().push_back((*b)[0]);
      }
    }
  }
  int64_t same = 0, total = 0;
  for (int t = 0; t < steps; ++t)
    for (size_t layer = 0; layer < lists[0][t].size(); ++layer)
      for (size_t g = 0; g < lists[0][t][layer].size(); ++g) {
        const auto& a = lists[0][t][layer][g];
        const auto& b = lists[1][t][layer][g];
        total += static_cast<int64_t>(b.size());
        for (const auto& x : a) same += std::count(b.begin(), b.end(), x);
      }
  // Equal up to near-ties that float32 summation order may flip.
  EXPECT_GE(same, total * 99 / 100) << same << " of " << total;
  EXPECT_EQ(lists[0], lists[2]) << "overlapped and in-stream prediction differ";
  std::printf("incremental vs full CNN: %ld of %ld selected blocks agree\n", long(same),
              long(total));
}

// Nothing is read before it is written: the decoder's buffers filled with zeros or with
// 0xff bytes (NaN floats, -1 ints) at creation give the same logits and selections, bit for
// bit, over a sparse prefill + decode with calibration steps.
TEST(CudaDecoder, OutputsDoNotDependOnUninitialisedMemory) {
  const std::vector<int32_t> toks = RealTokens();
  const int prompt = 1300, steps = 24;
  std::vector<float> logits[2];
  std::vector<std::vector<CudaDecoder::BlockList>> lists[2];
  for (int run = 0; run < 2; ++run) {
    CudaDecoderOptions o = SmallOptions();
    o.sparse.enabled = true;
    o.sparse.budget_tokens = 512;
    o.sparse.calibration_step = 5;
    o.predictor_weights = RandomPredictorWeights(8);
    o.debug_fill_byte = run == 0 ? 0x00 : 0xff;
    auto gpu = CudaDecoder::Load("models/apr-tiny", o);
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    auto s = (*gpu)->NewSequence();
    std::vector<float> l;
    ASSERT_TRUE((*gpu)->Prefill(*s, absl::MakeConstSpan(toks).subspan(0, prompt), &l).ok());
    logits[run] = l;
    for (int t = 0; t < steps; ++t) {
      ASSERT_TRUE((*gpu)->Decode(*s, toks[prompt + t], &l).ok());
      logits[run].insert(logits[run].end(), l.begin(), l.end());
      for (int layer = 0; layer < static_cast<int>((*gpu)->config().num_hidden_layers); ++layer) {
        auto b = (*gpu)->LastBlockLists(layer);
        ASSERT_TRUE(b.ok()) << b.status();
        lists[run].push_back((*b)[0]);
      }
    }
  }
  ASSERT_EQ(logits[0].size(), logits[1].size());
  EXPECT_EQ(std::memcmp(logits[0].data(), logits[1].data(), logits[0].size() * sizeof(float)), 0)
      << "logits depend on the initial contents of the decoder's buffers";
  EXPECT_EQ(lists[0], lists[1]) << "selections depend on the initial contents of the buffers";
}

// A sequence slot is reused once its sequence is gone. The new sequence must predict and
// decode as on a fresh decoder: the previous sequence's history rows must not show through
// (LaunchPrefillHistory clears the slot's rows over the new prompt's blocks; columns past
// them are cleared by decode steps before they become candidates).
TEST(CudaDecoder, AReusedSlotStartsWithACleanHistory) {
  const std::vector<int32_t> toks = RealTokens();
  ASSERT_GE(toks.size(), 1400u);
  CudaDecoderOptions o = SmallOptions();
  o.max_sequences = 1;  // every sequence gets slot 0
  o.sparse.enabled = true;
  o.sparse.budget_tokens = 256;  // 8 predicted blocks of about 50 candidates
  o.sparse.calibration_step = 5;
  // The shipped predictor (models/apr-tiny/predictor.safetensors), whose selections follow
  // the history.
  // The second sequence: a shorter, different prompt (fewer blocks than the first one left
  // behind), then decode steps.
  const std::vector<int32_t> second(toks.begin() + 300, toks.begin() + 1400);
  const int prompt = 900, steps = 16;
  auto run_second = [&](CudaDecoder& d, std::vector<float>* logits,
                        std::vector<std::vector<CudaDecoder::BlockList>>* lists) {
    auto s = d.NewSequence();
    std::vector<float> l;
    ASSERT_TRUE(d.Prefill(*s, absl::MakeConstSpan(second).subspan(0, prompt), &l).ok());
    *logits = l;
    for (int t = 0; t < steps; ++t) {
      ASSERT_TRUE(d.Decode(*s, second[prompt + t], &l).ok());
      logits->insert(logits->end(), l.begin(), l.end());
      for (int layer = 0; layer < static_cast<int>(d.config().num_hidden_layers); ++layer) {
        auto b = d.LastBlockLists(layer);
        ASSERT_TRUE(b.ok()) << b.status();
        lists->push_back((*b)[0]);
      }
    }
  };
  std::vector<float> logits[2];
  std::vector<std::vector<CudaDecoder::BlockList>> lists[2];
  {
    auto fresh = CudaDecoder::Load("models/apr-tiny", o);
    ASSERT_TRUE(fresh.ok()) << fresh.status();
    run_second(**fresh, &logits[0], &lists[0]);
  }
  auto reused = CudaDecoder::Load("models/apr-tiny", o);
  ASSERT_TRUE(reused.ok()) << reused.status();
  {
    auto first = (*reused)->NewSequence();
    std::vector<float> l;
    ASSERT_TRUE((*reused)->Prefill(*first, absl::MakeConstSpan(toks).subspan(0, 1300), &l).ok());
    for (int t = 0; t < 20; ++t) ASSERT_TRUE((*reused)->Decode(*first, toks[1300 + t], &l).ok());
  }
  run_second(**reused, &logits[1], &lists[1]);
  ASSERT_EQ(logits[0].size(), logits[1].size());
  EXPECT_EQ(lists[0], lists[1]) << "the reused slot selects other blocks than a fresh one";
  EXPECT_EQ(std::memcmp(logits[0].data(), logits[1].data(), logits[0].size() * sizeof(float)), 0)
      << "the reused slot gives other logits than a fresh one";
}

TEST(CudaDecoder, RejectsWhatItCannotDo) {
  CudaDecoderOptions o = SmallOptions();
  o.max_sequences = 2;
  auto gpu = CudaDecoder::Load("models/apr-tiny", o);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  CudaDecoder& d = **gpu;
  FixedBlocks hooks;
  std::vector<float> l;
  {
    auto s = d.NewSequence(&hooks);
    EXPECT_EQ(d.Prefill(*s, std::vector<int32_t>{1, 2}, &l).code(),
              absl::StatusCode::kUnimplemented);
  }
  auto a = d.NewSequence(), b = d.NewSequence(), c = d.NewSequence();
  EXPECT_EQ(d.Prefill(*c, std::vector<int32_t>{1}, &l).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(d.Decode(*a, 1, &l).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(d.Prefill(*a, std::vector<int32_t>{1, 4096}, &l).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(d.Prefill(*a, std::vector<int32_t>{1, 2, 3}, &l).ok());
  Sequence* twice[] = {a.get(), a.get()};
  EXPECT_EQ(d.DecodeBatch(twice, std::vector<int32_t>{1, 2}, &l).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(d.Prefill(*b, std::vector<int32_t>(4097, 1), &l).code(), absl::StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace apr::cuda
