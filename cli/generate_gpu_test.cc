// The `generate` binary on a GPU (tag gpu; tools/device/served_run.sh stage "generate" runs
// the packed binaries from the repository root): greedy --device cuda:0 must give the
// tokens --device cpu gives on models/apr-tiny, short prompts and a long one prefilled in
// parts; a missing GPU and a CPU-only --attention policy must fail saying why; stdout holds
// the generated text only.
//
// How far the two runs must agree: the CUDA decoder is bf16 (float32 accumulation), the
// CPU decoder float32, so their logits differ by bf16 rounding (relative L2 error 5.4e-3
// on apr-tiny, cuda_decoder_test), and a greedy token may legitimately differ where the
// CPU's top two logits are close. The runs must be equal up to their first difference,
// that difference must fall where the CPU's margin (top-1 minus top-2) is under a tenth of
// the logits' RMS (cuda_decoder_test's "clearly apart" rule, over 10x that error), and the
// clearly decided positions compared before it must number kMinCompared over all prompts,
// so that the test cannot pass vacuously.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "backends/cpu/cpu_decoder.h"
#include "runtime/tokenizer/tokenizer.h"

namespace apr {
namespace {

namespace fs = std::filesystem;

constexpr int kMaxTokens = 32;
// Clearly decided positions the runs must share, over all prompts. Along the CPU's paths
// (measured with this test's CPU half, 2026-12-06) 28 of the 128 positions are closer
// than kClearMargin, the tightest 0.003 x RMS; even if the GPU left every path at its
// first position under 0.05 x RMS (several times the bf16 error of a top-2 margin, about
// 0.008 x RMS), 31 clearly decided positions would come before.
constexpr int kMinCompared = 16;
constexpr double kClearMargin = 0.1;  // x the logits' RMS (about 0.45 on apr-tiny)

std::string GenerateBin() {
  const char* b = std::getenv("APR_GENERATE_BIN");
  return fs::absolute(b ? b : "cli/generate").string();
}

std::string TmpDir() {
  const char* t = std::getenv("TEST_TMPDIR");
  return t ? t : fs::temp_directory_path().string();
}

std::string ReadFile(const std::string& path) {
  std::stringstream ss;
  ss << std::ifstream(path).rdbuf();
  return ss.str();
}

struct GenerateRun {
  int rc = -1;
  std::string out, err;
  std::vector<int32_t> ids;
};

// One `generate` process on models/apr-tiny; `name` keeps its files apart.
GenerateRun RunGenerate(const std::string& name, const std::string& args) {
  const std::string base = TmpDir() + "/" + name;
  const std::string cmd =
      absl::StrCat(GenerateBin(), " --model=models/apr-tiny ", args, " --token_ids_file=", base,
                   ".ids >", base, ".out 2>", base, ".err");
  GenerateRun r;
  const int status = std::system(cmd.c_str());
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = ReadFile(base + ".out");
  r.err = ReadFile(base + ".err");
  std::ifstream ids(base + ".ids");
  for (int32_t t; ids >> t;) r.ids.push_back(t);
  return r;
}

// The CPU decoder's greedy path along `tokens`: per position, its top-1 minus top-2
// logit over the logits' RMS.
std::vector<double> RelativeMargins(const std::string& prompt, const std::vector<int32_t>& tokens) {
  auto tokenizer = Tokenizer::FromFile("models/apr-tiny/tokenizer.json");
  auto decoder = cpu::CpuDecoder::Load("models/apr-tiny");
  EXPECT_TRUE(tokenizer.ok() && decoder.ok());
  if (!tokenizer.ok() || !decoder.ok()) return {};
  const std::vector<int32_t> ids = (*tokenizer)->Encode(prompt, /*add_special_tokens=*/true);
  auto seq = (*decoder)->NewSequence();
  std::vector<float> logits;
  EXPECT_TRUE((*decoder)->Prefill(*seq, ids, &logits).ok());
  std::vector<double> margins;
  for (int32_t t : tokens) {
    std::vector<float> top = logits;
    std::partial_sort(top.begin(), top.begin() + 2, top.end(), std::greater<float>());
    double rms = 0;
    for (float x : logits) rms += double(x) * x;
    rms = std::sqrt(rms / logits.size());
    margins.push_back((top[0] - top[1]) / rms);
    if (!(*decoder)->Decode(*seq, t, &logits).ok()) break;
  }
  return margins;
}

struct Prompt {
  std::string name, text, extra;  // extra: more flags for both runs
};

std::vector<Prompt> Prompts() {
  // The long one: apr-tiny's own model cards (about 3K tokens), prefilled in 512-token
  // parts on both devices, so the parts and their progress lines are exercised too.
  const std::string cards =
      ReadFile("models/apr-tiny/README.md") + ReadFile("models/apr-tiny/PREDICTOR.md");
  return {{"fib", "def fibonacci(n):\n", ""},
          {"stack", "class Stack:\n    def __init__(self):\n        self.items = []\n", ""},
          {"imports", "import os\nimport sys\n\n\ndef main(argv):\n", ""},
          {"cards", cards, "--prefill_chunk=512"}};
}

TEST(GenerateGpu, GreedyTokensMatchTheCpuRun) {
  int compared = 0;
  for (const Prompt& p : Prompts()) {
    const std::string file = TmpDir() + "/" + p.name + ".prompt";
    std::ofstream(file) << p.text;
    const std::string args =
        absl::StrCat("--prompt_file=", file, " --temperature=0 --ignore_eos --echo_prompt=false",
                     " --max_tokens=", kMaxTokens, " ", p.extra);
    const GenerateRun cpu = RunGenerate(p.name + "_cpu", "--device=cpu " + args);
    const GenerateRun gpu = RunGenerate(p.name + "_gpu", "--device=cuda:0 " + args);
    ASSERT_EQ(cpu.rc, 0) << cpu.err;
    ASSERT_EQ(gpu.rc, 0) << gpu.err;
    ASSERT_EQ(cpu.ids.size(), static_cast<size_t>(kMaxTokens)) << cpu.err;
    ASSERT_EQ(gpu.ids.size(), static_cast<size_t>(kMaxTokens)) << gpu.err;
    EXPECT_TRUE(absl::StrContains(gpu.err, "loading ")) << gpu.err;
    EXPECT_TRUE(absl::StrContains(gpu.err, " on cuda:0 ... done in ")) << gpu.err;
    EXPECT_FALSE(absl::StrContains(gpu.out, "loading")) << "stdout is the text only";
    if (!p.extra.empty()) {
      EXPECT_TRUE(absl::StrContains(gpu.err, "prefill 512/")) << gpu.err;
      EXPECT_TRUE(absl::StrContains(cpu.err, "prefill 512/")) << cpu.err;
    }
    // Equal up to the first difference, which must come where the CPU's top two logits
    // are not clearly apart; the clearly decided positions before it are what this checks.
    const std::vector<double> margins = RelativeMargins(p.text, cpu.ids);
    ASSERT_EQ(margins.size(), cpu.ids.size());
    const int diff = static_cast<int>(
        std::mismatch(cpu.ids.begin(), cpu.ids.end(), gpu.ids.begin()).first - cpu.ids.begin());
    const int clear = static_cast<int>(std::count_if(margins.begin(), margins.begin() + diff,
                                                     [](double m) { return m >= kClearMargin; }));
    compared += clear;
    if (diff < kMaxTokens) {
      EXPECT_LT(margins[diff], kClearMargin)
          << p.name << ": the GPU picks token " << gpu.ids[diff] << " at " << diff
          << " where the CPU's top two logits are clearly apart (margin " << margins[diff]
          << " x RMS)\ncpu: " << cpu.out << "\ngpu: " << gpu.out;
    }
    std::printf(
        "GPU vs CPU %s: equal for %d of %d tokens (%d clearly decided)%s\n", p.name.c_str(), diff,
        kMaxTokens, clear,
        diff < kMaxTokens
            ? absl::StrCat(", then different (CPU margin ", margins[diff], " x RMS)").c_str()
            : "");
  }
  EXPECT_GE(compared, kMinCompared) << "too few clearly decided tokens to compare";
}

TEST(GenerateGpu, PredictorAttentionRunsOnTheGpu) {
  // The 3K-token prompt at a 256-token budget: most blocks are left out at every step.
  const Prompt cards = Prompts().back();
  const std::string file = TmpDir() + "/sparse.prompt";
  std::ofstream(file) << cards.text;
  for (const char* attention :
       {"predictor", "predictor-center", "predictor-hybrid", "predictor-nocal"}) {
    const GenerateRun r = RunGenerate(absl::StrCat("attn_", attention),
                                      absl::StrCat("--device=cuda:0 --attention=", attention,
                                                   " --budget=256 --prompt_file=", file,
                                                   " --temperature=0 --ignore_eos --max_tokens=8"));
    EXPECT_EQ(r.rc, 0) << attention << ": " << r.err;
    EXPECT_EQ(r.ids.size(), 8u) << r.err;
    EXPECT_TRUE(absl::StrContains(r.err, absl::StrCat("[cuda:0, ", attention, " 256-token")))
        << r.err;
  }
}

TEST(GenerateGpu, ACpuPolicyOnTheGpuFailsNamingIt) {
  const GenerateRun r =
      RunGenerate("h2o", "--device=cuda:0 --attention=h2o --prompt=x --max_tokens=2");
  EXPECT_NE(r.rc, 0);
  EXPECT_TRUE(absl::StrContains(r.err, "--attention h2o is a CPU policy")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "full, predictor, predictor-center, predictor-hybrid, predictor-nocal"))
      << r.err;
}

TEST(GenerateGpu, AMissingGpuFailsSayingHowManyThereAre) {
  const GenerateRun r = RunGenerate("cuda99", "--device=cuda:99 --prompt=x --max_tokens=2");
  EXPECT_NE(r.rc, 0);
  EXPECT_TRUE(absl::StrContains(r.err, "--device cuda:99: this machine has ")) << r.err;
  const GenerateRun bad = RunGenerate("gpu0", "--device=gpu0 --prompt=x --max_tokens=2");
  EXPECT_NE(bad.rc, 0);
  EXPECT_TRUE(absl::StrContains(bad.err, "expected cpu, cuda:N")) << bad.err;
}

}  // namespace
}  // namespace apr
