#include "predictor/eval/eval_util.h"

#include <gtest/gtest.h>

namespace apr::predictor {
namespace {

class Recording : public AttentionHooks {
 public:
  explicit Recording(int64_t want) : want_(want) {}
  void SelectTokens(const DecodeStep&, std::vector<TokenSpans>*) override {}
  void ObserveDecode(const DecodeStep&, const float*) override {}
  bool WantsProbabilities() const override { return false; }
  int64_t PrefillRowsWanted() const override { return want_; }
  void ObservePrefill(int64_t, int64_t len, int64_t rows, int64_t heads, const float* p) override {
    got.assign(p, p + heads * rows * len);
    rows_ = rows;
  }
  std::vector<float> got;
  int64_t rows_ = -1;

 private:
  int64_t want_;
};

TEST(PrefillFanOutTest, EachHookGetsItsLastRows) {
  Recording a(1), b(3), none(0);
  PrefillFanOut fan({&a, &b, &none});
  EXPECT_EQ(fan.PrefillRowsWanted(), 3);
  // 2 heads, 3 rows, 2 tokens: value = 100 h + 10 r + t.
  std::vector<float> p;
  for (int h = 0; h < 2; ++h)
    for (int r = 0; r < 3; ++r)
      for (int t = 0; t < 2; ++t) p.push_back(100 * h + 10 * r + t);
  fan.ObservePrefill(0, 2, 3, 2, p.data());
  EXPECT_EQ(b.got, p);
  EXPECT_EQ(a.rows_, 1);
  EXPECT_EQ(a.got, (std::vector<float>{20, 21, 120, 121}));
  EXPECT_EQ(none.rows_, -1);
}

TEST(PasskeyTest, FormatMatchesTheTrainingScript) {
  EXPECT_EQ(PasskeyNeedle("12345"), "\nThe pass key is 12345. Remember it. 12345 is the pass key.\n");
  EXPECT_EQ(PasskeyQuestion(), "\nWhat is the pass key? The pass key is");
  EXPECT_EQ(PasskeyAnswer("12345"), " 12345.");
  EXPECT_EQ(FirstDigits(" 12345."), "12345");
  EXPECT_EQ(FirstDigits("  1234"), "1234");
  EXPECT_EQ(FirstDigits("x12345"), "");
  EXPECT_EQ(FirstDigits(" 1234567"), "12345");
}

}  // namespace
}  // namespace apr::predictor
