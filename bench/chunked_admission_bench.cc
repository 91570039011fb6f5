// chunked_admission_bench: what admitting one long prompt costs the streams already
// running (issue 17 item 4; docs/CLUSTER.md "Long prompts"). The scheduler and step engine
// the worker serves with, in process, over a CUDA decoder with random Llama-3.1-8B weights
// and the sparse (predictor) decode: `streams` greedy streams run from short prompts; once
// they are all generating, their tokens/s is measured over `baseline_seconds` (A); then one
// `long_prompt`-token prompt is submitted and their tokens/s is measured from then until
// that prompt's first token (B). A row per scheduler setting: B / A (the target is
// >= 0.70) and the long prompt's time to first token.
//
//   chunked_admission_bench --long_prompt=131072 --streams=8 --settings=whole,2048:0.25
//
// Random weights: the tokens are meaningless; the work per step is the real model's.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "backends/cuda/cuda_decoder.h"
#include "backends/cuda/cuda_weights.h"
#include "backends/cuda/predictor/predictor_weights.h"
#include "bench/bench_util.h"
#include "runtime/scheduler.h"
#include "runtime/step_engine.h"

ABSL_FLAG(int, long_prompt, 131072, "tokens of the prompt admitted while the streams run");
ABSL_FLAG(int, streams, 8, "running streams");
ABSL_FLAG(int, stream_prompt, 4096, "prompt tokens of each running stream");
ABSL_FLAG(double, baseline_seconds, 4, "seconds the running streams are measured alone");
ABSL_FLAG(int, budget, 2048, "sparse budget (tokens per KV head)");
ABSL_FLAG(std::string, settings, "whole,2048:0.25",
          "scheduler settings, one row each: 'whole' (one prefill call) or CHUNK:SHARE");
ABSL_FLAG(std::string, out, "", "also write the markdown table here");

namespace apr::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Setting {
  std::string name;
  SchedulerOptions options;
};

std::vector<Setting> ParseSettings(const std::string& list) {
  std::vector<Setting> out;
  for (absl::string_view item : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    Setting s{std::string(item), {}};
    if (item != "whole") {
      std::vector<absl::string_view> f = absl::StrSplit(item, ':');
      if (f.size() != 2 || !absl::SimpleAtoi(f[0], &s.options.prefill_chunk_tokens) ||
          !absl::SimpleAtod(f[1], &s.options.max_prefill_share) ||
          s.options.prefill_chunk_tokens <= 0 || s.options.max_prefill_share <= 0 ||
          s.options.max_prefill_share > 1) {
        std::fprintf(stderr, "--settings: \"%s\" is not whole or CHUNK:SHARE\n",
                     std::string(item).c_str());
        std::exit(2);
      }
    }
    out.push_back(s);
  }
  return out;
}

// Token times of the running streams, recorded on the scheduler's thread.
class TokenClock {
 public:
  void Record() {
    std::lock_guard<std::mutex> l(mu_);
    times_.push_back(Clock::now());
  }
  int64_t CountBetween(Clock::time_point a, Clock::time_point b) const {
    std::lock_guard<std::mutex> l(mu_);
    return std::count_if(times_.begin(), times_.end(),
                         [&](Clock::time_point t) { return t >= a && t < b; });
  }
  int64_t Count() const {
    std::lock_guard<std::mutex> l(mu_);
    return static_cast<int64_t>(times_.size());
  }

 private:
  mutable std::mutex mu_;
  std::vector<Clock::time_point> times_;
};

std::vector<int32_t> RandomPrompt(int n, int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> p(n);
  for (int32_t& t : p) t = static_cast<int32_t>(rng() % vocab);
  return p;
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

struct RowResult {
  double baseline_tps = 0, during_tps = 0, ttft_s = 0;
  int64_t steps = 0;
};

RowResult RunRow(cuda::CudaDecoder& decoder, const Setting& setting) {
  const int streams = absl::GetFlag(FLAGS_streams);
  const int vocab = decoder.config().vocab_size;
  DecoderStepEngine engine(decoder);
  SchedulerOptions so = setting.options;
  so.max_batch_size = streams + 1;
  Scheduler scheduler(engine, so);
  TokenClock clock;
  std::atomic<int> generating{0};
  std::atomic<bool> long_done{false};
  Clock::time_point long_first;
  for (int i = 0; i < streams; ++i) {
    SchedulerRequest r;
    r.prompt = RandomPrompt(absl::GetFlag(FLAGS_stream_prompt), vocab, 100 + i);
    r.options.max_new_tokens = 1 << 30;  // until the row ends (Stop cancels them)
    r.options.sampling.temperature = 0;
    r.on_token = [&, first = true](int32_t) mutable {
      clock.Record();
      if (first) ++generating;
      first = false;
      return true;
    };
    BENCH_CHECK_OK(scheduler.Submit(std::move(r)).status());
  }
  scheduler.Start();
  while (generating.load() < streams) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const Clock::time_point a0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(absl::GetFlag(FLAGS_baseline_seconds)));
  const Clock::time_point b0 = Clock::now();
  const int64_t steps0 = scheduler.stats().steps;
  SchedulerRequest big;
  big.prompt = RandomPrompt(absl::GetFlag(FLAGS_long_prompt), vocab, 7);
  big.options.max_new_tokens = 1;
  big.on_token = [&](int32_t) {
    long_first = Clock::now();
    long_done = true;
    return true;
  };
  BENCH_CHECK_OK(scheduler.Submit(std::move(big)).status());
  while (!long_done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  RowResult r;
  r.steps = scheduler.stats().steps - steps0;
  scheduler.Stop();
  r.baseline_tps = clock.CountBetween(a0, b0) / Seconds(b0 - a0);
  r.during_tps = clock.CountBetween(b0, long_first) / Seconds(long_first - b0);
  r.ttft_s = Seconds(long_first - b0);
  return r;
}

int Main() {
  const int long_prompt = absl::GetFlag(FLAGS_long_prompt);
  const int streams = absl::GetFlag(FLAGS_streams);
  const int stream_prompt = absl::GetFlag(FLAGS_stream_prompt);
  const std::vector<Setting> settings = ParseSettings(absl::GetFlag(FLAGS_settings));
  const int max_ctx = long_prompt + 1024;
  auto weights = cuda::CudaWeights::Random(Llama31_8B(max_ctx), 1234);
  BENCH_CHECK_OK(weights.status());
  std::shared_ptr<const cuda::CudaWeights> w(std::move(*weights));
  cuda::CudaDecoderOptions o;
  o.max_sequences = streams + 1;
  o.max_context = max_ctx;
  // The streams grow while the long prompt is admitted; a row ends at its first token.
  o.pool_groups = (int64_t{streams} * (stream_prompt + 16384) + max_ctx) / 16;
  o.sparse.enabled = true;
  o.sparse.budget_tokens = absl::GetFlag(FLAGS_budget);
  o.predictor_weights = cuda::RandomPredictorWeights(77);
  auto dec = cuda::CudaDecoder::Create(w, o);
  BENCH_CHECK_OK(dec.status());
  cudaDeviceProp prop;
  BENCH_CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::string table = absl::StrFormat(
      "device: %s; Llama-3.1-8B geometry, random weights; %d streams of %d-token prompts, "
      "sparse decode (budget %d); one %d-token prompt admitted while they run\n\n"
      "| setting | streams tok/s alone | while admitting | ratio | long prompt TTFT (s) | "
      "steps meanwhile |\n| --- | ---: | ---: | ---: | ---: | ---: |\n",
      prop.name, streams, stream_prompt, o.sparse.budget_tokens, long_prompt);
  for (const Setting& s : settings) {
    std::fprintf(stderr, "row %s: running...\n", s.name.c_str());
    const RowResult r = RunRow(**dec, s);
    const std::string row =
        absl::StrFormat("| %s | %.1f | %.1f | %.2f | %.2f | %d |\n", s.name, r.baseline_tps,
                        r.during_tps, r.during_tps / r.baseline_tps, r.ttft_s, r.steps);
    std::fprintf(stderr, "%s", row.c_str());
    table += row;
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
