#include "runtime/sampling.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

namespace apr {
namespace {

// Logits whose softmax at temperature 1 is exactly [1/7, 2/7, 4/7].
const std::vector<float> kLogits = {0.0f, std::log(2.0f), std::log(4.0f)};

SamplingParams Params(float t, int32_t k = 0, float p = 1.0f, uint64_t seed = 0) {
  return SamplingParams{t, k, p, seed};
}

void ExpectDistribution(const std::vector<std::pair<int32_t, double>>& got,
                        const std::vector<std::pair<int32_t, double>>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].first, want[i].first) << i;
    EXPECT_NEAR(got[i].second, want[i].second, 1e-6) << i;
  }
}

TEST(Sampler, GreedyTakesArgMaxAndLowestIdOnTies) {
  Sampler s(Params(0));
  EXPECT_EQ(s.Sample(kLogits), 2);
  EXPECT_EQ(s.Sample(std::vector<float>{3, 5, 5, 1}), 1);
}

TEST(Sampler, TemperatureOneIsTheSoftmax) {
  ExpectDistribution(Sampler(Params(1)).Distribution(kLogits),
                     {{2, 4 / 7.}, {1, 2 / 7.}, {0, 1 / 7.}});
}

TEST(Sampler, TemperatureHalfSquaresTheOdds) {
  // logits / 0.5 -> exp gives 1, 4, 16.
  ExpectDistribution(Sampler(Params(0.5f)).Distribution(kLogits),
                     {{2, 16 / 21.}, {1, 4 / 21.}, {0, 1 / 21.}});
}

TEST(Sampler, TopKKeepsTheKMostLikely) {
  ExpectDistribution(Sampler(Params(1, 2)).Distribution(kLogits), {{2, 4 / 6.}, {1, 2 / 6.}});
}

TEST(Sampler, TopPKeepsTheSmallestSetWithEnoughMass) {
  // 4/7 = 0.571 already covers 0.5; 0.6 needs the next token too (6/7).
  ExpectDistribution(Sampler(Params(1, 0, 0.5f)).Distribution(kLogits), {{2, 1.0}});
  ExpectDistribution(Sampler(Params(1, 0, 0.6f)).Distribution(kLogits), {{2, 4 / 6.}, {1, 2 / 6.}});
}

TEST(Sampler, TopKThenTopP) {
  // top-k 2 leaves [4/6, 2/6]; top-p 0.7 then needs both.
  ExpectDistribution(Sampler(Params(1, 2, 0.7f)).Distribution(kLogits), {{2, 4 / 6.}, {1, 2 / 6.}});
  ExpectDistribution(Sampler(Params(1, 2, 0.6f)).Distribution(kLogits), {{2, 1.0}});
}

TEST(Sampler, DrawsFollowTheDistribution) {
  Sampler s(Params(1, 0, 1, 42));
  std::vector<int> counts(3);
  const int n = 70000;
  for (int i = 0; i < n; ++i) ++counts[s.Sample(kLogits)];
  EXPECT_NEAR(counts[0] / double(n), 1 / 7., 0.01);
  EXPECT_NEAR(counts[1] / double(n), 2 / 7., 0.01);
  EXPECT_NEAR(counts[2] / double(n), 4 / 7., 0.01);
}

TEST(Sampler, SameSeedSameStreamOtherSeedOtherStream) {
  Sampler a(Params(1, 0, 1, 7)), b(Params(1, 0, 1, 7)), c(Params(1, 0, 1, 8));
  std::vector<int32_t> sa, sb, sc;
  for (int i = 0; i < 64; ++i) {
    sa.push_back(a.Sample(kLogits));
    sb.push_back(b.Sample(kLogits));
    sc.push_back(c.Sample(kLogits));
  }
  EXPECT_EQ(sa, sb);
  EXPECT_NE(sa, sc);
}

TEST(Sampler, RejectsBadParameters) {
  EXPECT_FALSE(ValidateSamplingParams(Params(-1)).ok());
  EXPECT_FALSE(ValidateSamplingParams(Params(NAN)).ok());
  EXPECT_FALSE(ValidateSamplingParams(Params(1, -3)).ok());
  EXPECT_FALSE(ValidateSamplingParams(Params(1, 0, 0.0f)).ok());
  EXPECT_FALSE(ValidateSamplingParams(Params(1, 0, 1.5f)).ok());
  EXPECT_TRUE(ValidateSamplingParams(Params(0.7f, 40, 0.9f)).ok());
}

// The textbook sampler: sort the whole vocabulary (ties to the lower id), softmax, top-k,
// top-p, then walk the cumulative sum with the same 53-bit draw. Sampler walks a lazy heap
// instead and must pick the same ids.
int32_t ReferenceSample(const std::vector<float>& logits, const SamplingParams& p,
                        std::mt19937_64& rng) {
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  if (p.top_k > 0 && p.top_k < static_cast<int32_t>(ids.size())) ids.resize(p.top_k);
  std::vector<double> prob;
  double sum = 0;
  for (int32_t id : ids) {
    prob.push_back(std::exp((logits[id] - logits[ids[0]]) / static_cast<double>(p.temperature)));
    sum += prob.back();
  }
  double mass = 0;
  size_t cut = 0;
  while (cut < prob.size()) {
    mass += prob[cut++] / sum;
    if (p.top_p < 1.0f && mass >= p.top_p) break;
  }
  const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
  double acc = 0;
  for (size_t i = 0; i < cut; ++i) {
    acc += prob[i] / sum / (p.top_p < 1.0f ? mass : 1.0);
    if (u < acc) return ids[i];
  }
  return ids[cut - 1];
}

TEST(Sampler, PicksTheSameIdsAsAFullSortOnRandomRows) {
  std::mt19937 gen(3);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  const SamplingParams settings[] = {{1.0f, 0, 1.0f, 11},  {0.7f, 0, 0.9f, 12},
                                     {1.3f, 0, 0.5f, 13},  {0.8f, 50, 1.0f, 14},
                                     {1.0f, 40, 0.9f, 15}, {2.0f, 1, 1.0f, 16}};
  for (const SamplingParams& p : settings) {
    Sampler sampler(p);
    std::mt19937_64 reference_rng(p.seed);
    for (int row = 0; row < 200; ++row) {
      std::vector<float> logits(2000);
      // Every other row on a coarse grid, so that equal logits (ties) are common.
      for (float& x : logits) x = row % 2 ? std::round(normal(gen) * 2) / 2 : normal(gen);
      ASSERT_EQ(sampler.Sample(logits), ReferenceSample(logits, p, reference_rng))
          << "temperature " << p.temperature << " top_k " << p.top_k << " top_p " << p.top_p
          << " row " << row;
    }
  }
}

}  // namespace
}  // namespace apr
