// The trace format round-trips, half-precision conversion is exact where it must be, and
// the recorder's rows are what the decoder computed.
#include "predictor/recorder.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backends/cpu/cpu_decoder.h"
#include "runtime/dtype.h"
#include "runtime/testing/safetensors_writer.h"

namespace apr::predictor {
namespace {

TEST(F32ToF16Test, RoundTripsEveryHalfAndRoundsToNearestEven) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = F16ToF32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(f))));
      continue;
    }
    ASSERT_EQ(F32ToF16(f), h) << h;
  }
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1).
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(F32ToF16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(F32ToF16(65520.0f), 0x7c00);
  EXPECT_EQ(F32ToF16(65519.0f), 0x7bff);
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -25)), 0x0000);  // half of the smallest subnormal
  EXPECT_EQ(F32ToF16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(F32ToF16(-2.0f), 0xc000);
}

TEST(TraceFileTest, RoundTrip) {
  testutil::TempDir dir;
  const std::string path = dir.Join("t.trace");
  TraceHeader h{4, 3, 2, 1};
  Track a;
  a.sequence = 7, a.layer = 1, a.kv_head = 0, a.prompt_len = 9;  // 3 blocks
  a.prefill_rows = {{.5f, .25f, 0}, {1, 0, .125f}};
  // Decode steps at 10, 11, 12 tokens: 3 blocks each; the 13th token would add a block.
  a.target_rows = {{.1f, .2f, .3f}, {.4f, .5f, .6f}, {0, 0, 1}};
  a.input_rows = a.target_rows;
  a.input_rows[0][0] = 0.0625f;
  a.mass_rows = {{.5f, .25f, .25f}, {1, 0, 0}, {0, .5f, .5f}};
  Track b;
  b.sequence = 8, b.prompt_len = 4, b.prefill_rows = {{1}}, b.target_rows = {{.5f, .5f}};
  {
    auto w = TraceWriter::Create(path, h);
    ASSERT_TRUE(w.ok()) << w.status();
    ASSERT_TRUE((*w)->Write(a).ok());
    ASSERT_TRUE((*w)->Write(b).ok());
    Track bad = b;
    bad.target_rows[0].push_back(1);
    EXPECT_FALSE((*w)->Write(bad).ok());
    ASSERT_TRUE((*w)->Close().ok());
  }
  TraceHeader got;
  auto tracks = ReadTraceFile(path, &got);
  ASSERT_TRUE(tracks.ok()) << tracks.status();
  EXPECT_EQ(got.block, 4u);
  EXPECT_EQ(got.history, 3u);
  ASSERT_EQ(tracks->size(), 2u);
  const Track& ra = (*tracks)[0];
  EXPECT_EQ(ra.sequence, 7u);
  EXPECT_EQ(ra.layer, 1u);
  EXPECT_EQ(ra.prompt_len, 9u);
  EXPECT_EQ(ra.prefill_rows, a.prefill_rows);  // exactly representable values
  ASSERT_EQ(ra.target_rows.size(), 3u);
  for (size_t i = 0; i < 3; ++i)
    for (size_t j = 0; j < a.target_rows[i].size(); ++j)
      EXPECT_NEAR(ra.target_rows[i][j], a.target_rows[i][j], 1e-3);
  EXPECT_EQ(ra.input_rows[0][0], 0.0625f);
  EXPECT_EQ(ra.mass_rows, a.mass_rows);
  EXPECT_TRUE((*tracks)[1].input_rows.empty());
  EXPECT_TRUE((*tracks)[1].mass_rows.empty());
  // A truncated file is an error.
  std::string bytes;
  {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) bytes.append(buf, n);
    std::fclose(f);
  }
  ASSERT_TRUE(testutil::WriteFile(path, bytes.substr(0, bytes.size() - 3)).ok());
  EXPECT_FALSE(ReadTraceFile(path, &got).ok());
}

TEST(TraceRecorderTest, RecordsWhatTheDecoderComputed) {
  auto dec = cpu::CpuDecoder::Load("models/apr-tiny");
  ASSERT_TRUE(dec.ok()) << dec.status();
  const ModelDims dims = DimsOf((*dec)->config());
  SelectionConfig c;
  std::mt19937 rng(9);
  std::uniform_int_distribution<int32_t> tok(3, 4095);
  std::vector<int32_t> prompt(200);
  for (auto& t : prompt) t = tok(rng);

  // Full-attention recording: the prefill rows are the last 64 prompt rows, and the target
  // row of step i is the block-pooled full attention at context 200 + i + 1.
  TraceRecorder rec(c, dims);
  auto seq = (*dec)->NewSequence(&rec);
  std::vector<float> logits;
  ASSERT_TRUE((*dec)->Prefill(*seq, prompt, &logits).ok());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE((*dec)->Decode(*seq, tok(rng), &logits).ok());
  std::vector<Track> tracks = rec.TakeTracks(3);
  ASSERT_EQ(tracks.size(), 12u);
  for (const Track& t : tracks) {
    EXPECT_EQ(t.sequence, 3u);
    EXPECT_EQ(t.prompt_len, 200u);
    ASSERT_EQ(t.prefill_rows.size(), 64u);
    ASSERT_EQ(t.target_rows.size(), 10u);
    EXPECT_TRUE(t.input_rows.empty());
    ASSERT_EQ(t.mass_rows.size(), 10u);
    for (const auto& m : t.mass_rows) {  // a distribution over blocks, >= the block max / 16..
      double sum = 0;
      for (float x : m) sum += x;
      EXPECT_NEAR(sum, 1.0, 1e-4);
    }
    for (size_t b = 0; b < t.mass_rows[9].size(); ++b)  // mass >= max-pooled value / group
      EXPECT_GE(t.mass_rows[9][b] * 3 + 1e-6, t.target_rows[9][b]);
    EXPECT_EQ(t.prefill_rows[0].size(), 13u);
    EXPECT_EQ(t.target_rows[9].size(), 14u);  // 210 tokens
    // Causality of the prefill rows: row 0 is query 136, which sees blocks 0..8 only.
    for (size_t b = 9; b < 13; ++b) EXPECT_EQ(t.prefill_rows[0][b], 0.0f);
    EXPECT_GT(t.prefill_rows[63][12], 0.0f);  // the last query sees the last block
  }
  // Recording under the predictor: inputs are the rows the policy appended.
  testutil::TempDir dir;
  auto policy_cnn = PredictorCnn::Load("predictor/testdata/cnn_golden.safetensors");
  ASSERT_TRUE(policy_cnn.ok());
  c.budget = 128 + 16;
  AttentionPredictorPolicy policy(c, dims, &*policy_cnn, {5, CalibrationSource::kFull});
  TraceRecorder rec2(c, dims, &policy);
  auto seq2 = (*dec)->NewSequence(&rec2);
  ASSERT_TRUE((*dec)->Prefill(*seq2, prompt, &logits).ok());
  for (int i = 0; i < 6; ++i) ASSERT_TRUE((*dec)->Decode(*seq2, tok(rng), &logits).ok());
  tracks = rec2.TakeTracks(4);
  for (const Track& t : tracks) {
    ASSERT_EQ(t.input_rows.size(), 6u);
    // Step 5 is a calibration step: its input row is the full row (the target).
    EXPECT_EQ(t.input_rows[4], t.target_rows[4]);
    // Other steps attend a subset: the sparse row differs from the full one.
    EXPECT_NE(t.input_rows[0], t.target_rows[0]);
  }
  const std::string path = dir.Join("r.trace");
  auto w = TraceWriter::Create(path, TraceHeader{16, 64, 6, 2});
  ASSERT_TRUE(w.ok());
  for (const Track& t : tracks) ASSERT_TRUE((*w)->Write(t).ok());
  ASSERT_TRUE((*w)->Close().ok());
  TraceHeader h;
  auto back = ReadTraceFile(path, &h);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), tracks.size());
  for (size_t i = 0; i < tracks.size(); ++i) {
    for (size_t r = 0; r < 6; ++r)
      for (size_t j = 0; j < tracks[i].target_rows[r].size(); ++j) {
        const float want = tracks[i].target_rows[r][j];
        EXPECT_NEAR((*back)[i].target_rows[r][j], want, 1e-3 * want + 1e-7);
      }
  }
}

}  // namespace
}  // namespace apr::predictor
