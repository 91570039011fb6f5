// Host cost of one sampled (temperature > 0) row of a Llama-3 vocabulary (128,256 logits):
// the worker samples such rows on the host after the step (greedy rows are picked on the
// GPU). Logits are Gaussian with a spread like a trained model's (a few tokens hold most of
// the mass); the table prints microseconds per row for the usual settings.
//   bazel run -c opt //bench:sampling_bench -- [--vocab 128256] [--rows 200]
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "runtime/sampling.h"

ABSL_FLAG(int, vocab, 128256, "logits per row");
ABSL_FLAG(int, rows, 200, "rows sampled per setting");
ABSL_FLAG(double, spread, 4.0, "standard deviation of the logits");

namespace {

double MicrosecondsPerRow(const apr::SamplingParams& p, const std::vector<std::vector<float>>& rows,
                          int64_t* checksum) {
  apr::Sampler sampler(p);
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& r : rows) *checksum += sampler.Sample(r);
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::micro>(t1 - t0).count() / rows.size();
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int vocab = absl::GetFlag(FLAGS_vocab), n = absl::GetFlag(FLAGS_rows);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, static_cast<float>(absl::GetFlag(FLAGS_spread)));
  std::vector<std::vector<float>> rows(n, std::vector<float>(vocab));
  for (auto& r : rows)
    for (float& x : r) x = normal(rng);
  struct Setting {
    const char* name;
    apr::SamplingParams params;
  };
  const Setting settings[] = {
      {"greedy (host arg max)", {0.0f, 0, 1.0f, 7}},
      {"temperature 1", {1.0f, 0, 1.0f, 7}},
      {"temperature 0.7, top_p 0.9", {0.7f, 0, 0.9f, 7}},
      {"temperature 1, top_p 0.95", {1.0f, 0, 0.95f, 7}},
      {"temperature 0.8, top_k 50", {0.8f, 50, 1.0f, 7}},
      {"temperature 1, top_k 40, top_p 0.9", {1.0f, 40, 0.9f, 7}},
  };
  std::printf("vocab %d, %d rows per setting, logits N(0, %.1f)\n\n", vocab, n,
              absl::GetFlag(FLAGS_spread));
  std::printf("| setting | us per row | checksum of the ids |\n| --- | ---: | ---: |\n");
  for (const auto& s : settings) {
    int64_t checksum = 0;
    const double us = MicrosecondsPerRow(s.params, rows, &checksum);
    std::printf("| %s | %.1f | %lld |\n", s.name, us, static_cast<long long>(checksum));
  }
  return 0;
}
