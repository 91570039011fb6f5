// The CPU reference decoder's logits against Hugging Face transformers (float64) on the
// same weights. Golden files and the script that made them: tests/golden/README.md.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "backends/cpu/cpu_decoder.h"
#include "runtime/safetensors.h"

namespace apr::cpu {
namespace {

constexpr double kTolerance = 1e-4;  // relative L2 error per position

struct Case {
  std::string golden;
  std::string model;
  // Made on the GPU machine after the code that reads it: skipped until the file exists.
  bool pending = false;
};

const Case kCases[] = {
    {"tests/golden/tiny-llama3.logits.safetensors", "tests/golden/models/tiny-llama3"},
    {"tests/golden/tiny-mistral.logits.safetensors", "tests/golden/models/tiny-mistral"},
    {"tests/golden/apr-tiny.logits.safetensors", "models/apr-tiny"},
    // Issue 20: one model per family / RoPE variant (tools/goldens/make_family_goldens.sh).
    {"tests/golden/tiny-qwen2.logits.safetensors", "tests/golden/models/tiny-qwen2", true},
    {"tests/golden/tiny-qwen3.logits.safetensors", "tests/golden/models/tiny-qwen3", true},
    {"tests/golden/tiny-mistral-sliding.logits.safetensors",
     "tests/golden/models/tiny-mistral-sliding", true},
    {"tests/golden/tiny-llama-yarn.logits.safetensors", "tests/golden/models/tiny-llama-yarn",
     true},
    {"tests/golden/tiny-llama-dynamic.logits.safetensors", "tests/golden/models/tiny-llama-dynamic",
     true},
    {"tests/golden/tiny-llama-longrope.logits.safetensors",
     "tests/golden/models/tiny-llama-longrope", true},
    {"tests/golden/tiny-llama32-tied.logits.safetensors", "tests/golden/models/tiny-llama32-tied",
     true},
};

bool Exists(const std::string& path) { return std::ifstream(path).good(); }

struct Prompt {
  std::vector<int32_t> ids;
  std::vector<int64_t> positions;
  const float* logits;  // [positions][vocab]
};

std::vector<Prompt> ReadPrompts(const SafetensorsFile& f) {
  std::vector<Prompt> out;
  for (int i = 0;; ++i) {
    const TensorView* ids = f.Find(absl::StrCat("p", i, ".ids"));
    if (ids == nullptr) break;
    const TensorView* pos = f.Find(absl::StrCat("p", i, ".positions"));
    const TensorView* logits = f.Find(absl::StrCat("p", i, ".logits"));
    EXPECT_TRUE(pos != nullptr && logits != nullptr);
    Prompt p;
    const auto* id64 = reinterpret_cast<const int64_t*>(ids->data);
    p.ids.assign(id64, id64 + ids->numel());
    const auto* pos64 = reinterpret_cast<const int64_t*>(pos->data);
    p.positions.assign(pos64, pos64 + pos->numel());
    p.logits = reinterpret_cast<const float*>(logits->data);
    out.push_back(std::move(p));
  }
  return out;
}

double RelativeError(const float* got, const float* want, int64_t n) {
  double diff = 0, ref = 0;
  for (int64_t i = 0; i < n; ++i) {
    diff += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    ref += double(want[i]) * want[i];
  }
  return std::sqrt(diff / ref);
}

class GoldenLogits : public ::testing::TestWithParam<Case> {};

TEST_P(GoldenLogits, PrefillAndDecodeMatchTransformers) {
  const Case& c = GetParam();
  if (c.pending && !Exists(c.golden)) {
    GTEST_SKIP() << c.golden << " is not there yet: bash tools/goldens/make_family_goldens.sh OUT "
                 << "on a machine with transformers, then copy OUT/* into tests/golden/";
  }
  auto golden = SafetensorsFile::Open(c.golden);
  ASSERT_TRUE(golden.ok()) << golden.status()
                           << " (make it with tools/device/train_bundled_model.sh)";
  auto decoder = CpuDecoder::Load(c.model);
  ASSERT_TRUE(decoder.ok()) << decoder.status();
  const int64_t vocab = (*decoder)->config().vocab_size;
  const auto prompts = ReadPrompts(**golden);
  ASSERT_FALSE(prompts.empty());
  for (size_t pi = 0; pi < prompts.size(); ++pi) {
    const Prompt& p = prompts[pi];
    const int64_t n = static_cast<int64_t>(p.ids.size());
    // Prefill: every position at once.
    auto seq = (*decoder)->NewSequence();
    std::vector<float> last, all;
    ASSERT_TRUE((*decoder)->Prefill(*seq, p.ids, &last, &all).ok());
    double worst = 0;
    for (size_t k = 0; k < p.positions.size(); ++k) {
      const double e = RelativeError(&all[p.positions[k] * vocab], p.logits + k * vocab, vocab);
      worst = std::max(worst, e);
      EXPECT_LE(e, kTolerance) << c.golden << " prompt " << pi << " prefill position "
                               << p.positions[k];
    }
    EXPECT_EQ(0, std::memcmp(last.data(), &all[(n - 1) * vocab], vocab * sizeof(float)));

    // Decode: prefill a prefix, then one token at a time through the KV cache.
    const int64_t split = n > 128 ? n - 64 : std::max<int64_t>(1, n / 2);
    auto dseq = (*decoder)->NewSequence();
    std::vector<float> logits;
    ASSERT_TRUE(
        (*decoder)->Prefill(*dseq, absl::MakeConstSpan(p.ids).subspan(0, split), &logits).ok());
    for (int64_t pos = split - 1; pos < n; ++pos) {
      if (pos > split - 1) ASSERT_TRUE((*decoder)->Decode(*dseq, p.ids[pos], &logits).ok());
      for (size_t k = 0; k < p.positions.size(); ++k) {
        if (p.positions[k] != pos) continue;
        const double e = RelativeError(logits.data(), p.logits + k * vocab, vocab);
        worst = std::max(worst, e);
        EXPECT_LE(e, kTolerance) << c.golden << " prompt " << pi << " decode position " << pos;
      }
    }
    std::printf("%s prompt %zu (%ld tokens): worst relative error %.2e\n", c.golden.c_str(), pi, n,
                worst);
  }
}

INSTANTIATE_TEST_SUITE_P(AllModels, GoldenLogits, ::testing::ValuesIn(kCases),
                         [](const auto& info) {
                           std::string m = info.param.model.substr(info.param.model.rfind('/') + 1);
                           for (char& ch : m)
                             if (ch == '-') ch = '_';
                           return m;
                         });

}  // namespace
}  // namespace apr::cpu
