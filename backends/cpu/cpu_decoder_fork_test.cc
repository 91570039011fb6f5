// A forked sequence decodes exactly as the original would.
#include <gtest/gtest.h>

#include <random>

#include "backends/cpu/cpu_decoder.h"
#include "runtime/kv_offload.h"

namespace apr::cpu {
namespace {

TEST(CpuDecoderForkTest, ForkContinuesIdentically) {
  auto dec = CpuDecoder::Load("models/apr-tiny");
  ASSERT_TRUE(dec.ok()) << dec.status();
  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> tok(3, 4095);
  std::vector<int32_t> prompt(100);
  for (auto& t : prompt) t = tok(rng);
  auto a = (*dec)->NewSequence();
  std::vector<float> la, lb;
  ASSERT_TRUE((*dec)->Prefill(*a, prompt, &la).ok());
  absl::StatusOr<std::unique_ptr<Sequence>> forked = (*dec)->Fork(*a);
  ASSERT_TRUE(forked.ok()) << forked.status();
  std::unique_ptr<Sequence> b = std::move(*forked);
  EXPECT_EQ(b->length(), 100);
  for (int i = 0; i < 5; ++i) {
    const int32_t t = tok(rng);
    ASSERT_TRUE((*dec)->Decode(*a, t, &la).ok());
    ASSERT_TRUE((*dec)->Decode(*b, t, &lb).ok());
    EXPECT_EQ(la, lb);
  }
  // The fork is independent: decoding one does not move the other.
  ASSERT_TRUE((*dec)->Decode(*a, 5, &la).ok());
  EXPECT_EQ(a->length(), 106);
  EXPECT_EQ(b->length(), 105);
}

// Never reached: the decoder must refuse before it touches the offload.
class UnusedOffload : public KvOffload {
 public:
  int64_t block_bytes() const override { return 2 * 16 * 64 * 4; }
  absl::Status WriteBlocks(absl::Span<const KvBlockRef>, absl::Span<const void* const>) override {
    return absl::InternalError("unexpected write");
  }
  absl::Status ReadBlocks(absl::Span<const KvBlockRef>, absl::Span<void* const>) override {
    return absl::InternalError("unexpected read");
  }
};

TEST(CpuDecoderForkTest, RefusesOffloadedSequences) {
  auto dec = CpuDecoder::Load("models/apr-tiny");
  ASSERT_TRUE(dec.ok()) << dec.status();
  UnusedOffload offload;
  auto seq = (*dec)->NewOffloadedSequence(&offload);
  ASSERT_TRUE(seq.ok()) << seq.status();
  absl::StatusOr<std::unique_ptr<Sequence>> forked = (*dec)->Fork(**seq);
  EXPECT_EQ(forked.status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace apr::cpu
