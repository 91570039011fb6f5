// real_reuse_bench: block reuse of the offloaded KV cache on real text (issue 17 item 6).
// The offload table's figures (fetched MB/step, cache hit rate, stalls) were measured on
// random weights and random contexts, where consecutive selections have no reason to be
// alike. Here the bundled model's real weights and trained predictor decode real text the
// model never saw (the repository's docs/*.md: apr-tiny was trained on Debian's Python
// sources, Python docs and man pages), next to the same geometry with random weights,
// random predictor and random context, in one run:
//   (a) the full cache offloaded and moved to the GPU every step (budget = context),
//   (b) predicted sparse offload: GPU block cache + cross-token prefetch (host RAM tier),
//   (c) the same sparse attention with the whole cache resident.
// Real rows: per text window, a `prompt`-token prefill, then `steps` decode steps fed the
// text's true continuation (teacher forcing). Step time: median wall time of a
// synchronous step.
//
//   real_reuse_bench --model=models/apr-tiny --texts=docs --windows=4
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "backends/cuda/cuda_decoder.h"
#include "backends/cuda/cuda_decoder_bench_peer.h"
#include "backends/cuda/cuda_weights.h"
#include "backends/cuda/predictor/predictor_weights.h"
#include "bench/bench_util.h"
#include "runtime/model_config.h"
#include "runtime/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, model, "models/apr-tiny", "model folder with predictor.safetensors");
ABSL_FLAG(std::string, texts, "docs", "folder of .md files: the real text");
ABSL_FLAG(int, windows, 4, "text windows (real rows are averaged over them)");
ABSL_FLAG(int, prompt, 3584, "prompt tokens of each window");
ABSL_FLAG(int, steps, 256, "decode steps of each window");
ABSL_FLAG(int, budget, 1024, "sparse budget (tokens per KV head)");
ABSL_FLAG(int, calibration, 5, "calibration_step (key summary)");
ABSL_FLAG(std::string, out, "", "also write the markdown table here");

namespace apr::bench {
namespace {

namespace fs = std::filesystem;
using cuda::CudaDecoder;
using cuda::CudaDecoderBenchPeer;
using cuda::CudaDecoderOptions;
using cuda::OffloadStats;

struct Totals {
  OffloadStats stats;  // summed over windows, decode steps only
  std::vector<double> step_ms;
  int64_t steps = 0;
};

std::vector<int32_t> TextTokens(const std::string& model, const std::string& folder) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(folder))
    if (e.path().extension() == ".md") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::string text;
  for (const fs::path& p : files) {
    std::stringstream ss;
    ss << std::ifstream(p).rdbuf();
    text += ss.str();
  }
  auto tok = Tokenizer::FromFile(model + "/tokenizer.json");
  BENCH_CHECK_OK(tok.status());
  return (*tok)->Encode(text, /*add_special_tokens=*/false);
}

CudaDecoderOptions Options(char mode, int context) {
  CudaDecoderOptions o;
  o.max_sequences = 1;
  o.max_context = context;
  o.sparse.enabled = true;
  o.sparse.budget_tokens = mode == 'a' ? context : absl::GetFlag(FLAGS_budget);
  o.sparse.calibration_step = absl::GetFlag(FLAGS_calibration);
  o.sparse.calibration_source = cuda::CalibrationSource::kKeySummary;
  o.placement = mode == 'c' ? KvPlacement::kDevice : KvPlacement::kHost;
  o.offload.reuse_cached_blocks = mode != 'a';  // (a) moves every block every step
  return o;
}

void Add(OffloadStats& t, const OffloadStats& after, const OffloadStats& before) {
  t.blocks_fetched += after.blocks_fetched - before.blocks_fetched;
  t.bytes_fetched += after.bytes_fetched - before.bytes_fetched;
  t.prefetch_hits += after.prefetch_hits - before.prefetch_hits;
  t.predicted_blocks += after.predicted_blocks - before.predicted_blocks;
  t.prefetch_stalls += after.prefetch_stalls - before.prefetch_stalls;
}

// Steps `seq` through `tokens`, one synchronous step each, into `t`.
void TimeSteps(CudaDecoder& d, Sequence& seq, const std::vector<int32_t>& tokens, Totals& t) {
  std::vector<float> logits;
  const OffloadStats before = d.offload_stats();
  for (int32_t tok : tokens) {
    const auto t0 = std::chrono::steady_clock::now();
    BENCH_CHECK_OK(d.Decode(seq, tok, &logits));
    t.step_ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  Add(t.stats, d.offload_stats(), before);
  t.steps += static_cast<int64_t>(tokens.size());
}

Totals RealRow(char mode, const std::vector<int32_t>& ids) {
  const std::string model = absl::GetFlag(FLAGS_model);
  const int prompt = absl::GetFlag(FLAGS_prompt), steps = absl::GetFlag(FLAGS_steps);
  const int windows = absl::GetFlag(FLAGS_windows);
  const int64_t span = prompt + steps + 1;
  if (static_cast<int64_t>(ids.size()) < span * windows) {
    std::fprintf(stderr, "the text has %zu tokens; %d windows of %ld need more\n", ids.size(),
                 windows, long(span));
    std::exit(1);
  }
  Totals t;
  auto dec = CudaDecoder::Load(model, Options(mode, prompt + steps + 64));
  BENCH_CHECK_OK(dec.status());
  for (int w = 0; w < windows; ++w) {
    const auto first = ids.begin() + (ids.size() / windows) * w;
    const std::vector<int32_t> p(first, first + prompt),
        cont(first + prompt, first + prompt + steps);
    auto seq = (*dec)->NewSequence();
    std::vector<float> logits;
    BENCH_CHECK_OK((*dec)->Prefill(*seq, p, &logits));
    TimeSteps(**dec, *seq, cont, t);
  }
  return t;
}

Totals RandomRow(char mode, const ModelConfig& config) {
  const int prompt = absl::GetFlag(FLAGS_prompt), steps = absl::GetFlag(FLAGS_steps);
  auto w = cuda::CudaWeights::Random(config, 1234);
  BENCH_CHECK_OK(w.status());
  CudaDecoderOptions o = Options(mode, prompt + steps + 64);
  o.predictor_weights = cuda::RandomPredictorWeights(77);
  auto dec = CudaDecoder::Create(std::shared_ptr<const cuda::CudaWeights>(std::move(*w)), o);
  BENCH_CHECK_OK(dec.status());
  CudaDecoder& d = **dec;
  BENCH_CHECK_OK(CudaDecoderBenchPeer::FillPoolRandom(d, 99));
  Totals t;
  for (int window = 0; window < absl::GetFlag(FLAGS_windows); ++window) {
    auto seq = d.NewSequence();
    BENCH_CHECK_OK(CudaDecoderBenchPeer::FillRandomContext(d, *seq, prompt, 500 + window));
    std::mt19937 rng(window);
    std::vector<int32_t> tokens(steps);
    for (int32_t& x : tokens) x = static_cast<int32_t>(rng() % config.vocab_size);
    TimeSteps(d, *seq, tokens, t);
  }
  return t;
}

std::string Row(const std::string& what, char mode, const Totals& t, double a_ms, double c_ms) {
  const double steps = static_cast<double>(std::max<int64_t>(t.steps, 1));
  const double ms = Median(t.step_ms);
  const OffloadStats& s = t.stats;
  const bool offloaded = mode != 'c';
  return absl::StrFormat(
      "| %s | (%c) | %s | %s | %s | %s | %.3f | %.2f | %.2f |\n", what, mode,
      offloaded ? absl::StrFormat("%.3f", s.bytes_fetched / 1e6 / steps) : "-",
      offloaded ? absl::StrFormat("%.1f", s.blocks_fetched / steps) : "-",
      offloaded && s.predicted_blocks > 0
          ? absl::StrFormat("%.1f%%", 100.0 * s.prefetch_hits / s.predicted_blocks)
          : "-",
      offloaded ? absl::StrFormat("%.2f", s.prefetch_stalls / steps) : "-", ms, ms / c_ms,
      ms / a_ms);
}

int Main() {
  const std::string model = absl::GetFlag(FLAGS_model);
  auto config = LoadModelConfig(model + "/config.json");
  BENCH_CHECK_OK(config.status());
  const std::vector<int32_t> ids = TextTokens(model, absl::GetFlag(FLAGS_texts));
  cudaDeviceProp prop;
  BENCH_CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::string table = absl::StrFormat(
      "device: %s; %s (%ld layers, %ld KV heads, head_dim %ld); %d windows x (%d-token "
      "prompt + %d steps); budget %d, calibration every %d steps (key summary); tier: host "
      "RAM\n\n| weights, predictor, context | mode | fetched MB/step | blocks/step | cache hit "
      "rate | stalls/step | step (ms) | vs (c) | vs (a) |\n| --- | --- | ---: | ---: | ---: | "
      "---: | ---: | ---: | ---: |\n",
      prop.name, model, long(config->num_hidden_layers), long(config->num_key_value_heads),
      long(config->head_dim), absl::GetFlag(FLAGS_windows), absl::GetFlag(FLAGS_prompt),
      absl::GetFlag(FLAGS_steps), absl::GetFlag(FLAGS_budget), absl::GetFlag(FLAGS_calibration));
  for (bool real : {true, false}) {
    Totals rows[3];
    const char modes[3] = {'a', 'b', 'c'};
    for (int i = 0; i < 3; ++i) {
      std::fprintf(stderr, "%s (%c)...\n", real ? "real" : "random", modes[i]);
      rows[i] = real ? RealRow(modes[i], ids) : RandomRow(modes[i], *config);
    }
    const double a_ms = Median(rows[0].step_ms), c_ms = Median(rows[2].step_ms);
    const std::string what =
        real ? "real: trained, docs/*.md text" : "random weights, random predictor and context";
    for (int i = 0; i < 3; ++i) table += Row(what, modes[i], rows[i], a_ms, c_ms);
  }
  std::printf("\n%s", table.c_str());
  if (const std::string out = absl::GetFlag(FLAGS_out); !out.empty()) std::ofstream(out) << table;
  return 0;
}

}  // namespace
}  // namespace apr::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return apr::bench::Main();
}
