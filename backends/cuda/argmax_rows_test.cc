// LaunchArgMaxRows against ArgMaxToken (runtime/sampling.h), the host's greedy rule, on
// random rows at a Llama-3 vocabulary, with planted ties, a constant row and -inf rows.
#include "backends/cuda/argmax_rows.h"

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/sampling.h"

namespace apr::cuda {
namespace {

std::vector<int32_t> ArgMaxOnDevice(const std::vector<float>& logits, int rows, int vocab) {
  float* d_logits = nullptr;
  int32_t* d_out = nullptr;
  EXPECT_EQ(cudaMalloc(&d_logits, logits.size() * sizeof(float)), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&d_out, rows * sizeof(int32_t)), cudaSuccess);
  EXPECT_EQ(
      cudaMemcpy(d_logits, logits.data(), logits.size() * sizeof(float), cudaMemcpyHostToDevice),
      cudaSuccess);
  EXPECT_EQ(LaunchArgMaxRows(d_logits, rows, vocab, d_out, nullptr), cudaSuccess);
  std::vector<int32_t> out(rows, -1);
  EXPECT_EQ(cudaMemcpy(out.data(), d_out, rows * sizeof(int32_t), cudaMemcpyDeviceToHost),
            cudaSuccess);
  cudaFree(d_logits);
  cudaFree(d_out);
  return out;
}

TEST(ArgMaxRows, EqualsTheHostGreedyRule) {
  constexpr int kRows = 37, kVocab = 128256;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::uniform_int_distribution<int> pos(0, kVocab - 1);
  std::vector<float> logits(size_t{kRows} * kVocab);
  for (float& x : logits) x = normal(rng);
  auto row = [&](int r) { return logits.data() + static_cast<size_t>(r) * kVocab; };
  // Rows 0-9: the maximum twice (and row 9 three times), in random places: the lower wins.
  for (int r = 0; r < 10; ++r) {
    const int a = pos(rng), b = pos(rng);
    row(r)[a] = row(r)[b] = 100.0f;
    if (r == 9) row(r)[kVocab - 1] = 100.0f;
  }
  row(10)[0] = row(10)[kVocab - 1] = 50.0f;         // ties at both ends
  std::fill(row(11), row(11) + kVocab, 1.5f);       // constant: index 0
  std::fill(row(12), row(12) + kVocab, -INFINITY);  // all -inf: index 0
  std::fill(row(13), row(13) + kVocab, -INFINITY);
  row(13)[kVocab / 2] = -1e30f;  // one finite entry
  row(14)[kVocab - 1] = 1e30f;   // the last entry
  const std::vector<int32_t> got = ArgMaxOnDevice(logits, kRows, kVocab);
  for (int r = 0; r < kRows; ++r) {
    EXPECT_EQ(got[r], ArgMaxToken(absl::MakeConstSpan(row(r), kVocab))) << "row " << r;
  }
  EXPECT_EQ(got[11], 0);
  EXPECT_EQ(got[12], 0);
  EXPECT_EQ(got[13], kVocab / 2);
  EXPECT_EQ(got[14], kVocab - 1);
}

TEST(ArgMaxRows, SmallAndOddVocabularies) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int vocab : {1, 31, 1023, 1025, 32000}) {
    constexpr int kRows = 5;
    std::vector<float> logits(size_t{kRows} * vocab);
    for (float& x : logits) x = u(rng);
    const std::vector<int32_t> got = ArgMaxOnDevice(logits, kRows, vocab);
    for (int r = 0; r < kRows; ++r) {
      EXPECT_EQ(got[r], ArgMaxToken(absl::MakeConstSpan(
                            logits.data() + static_cast<size_t>(r) * vocab, vocab)))
          << "vocab " << vocab << " row " << r;
    }
  }
}

}  // namespace
}  // namespace apr::cuda
