// DecoderStepEngine's recovery from a lost KV store: sequences rebuilt from their token
// histories continue with exactly the uninterrupted run's tokens; a store that stays
// down fails the step cleanly; other errors are not retried.
#include "runtime/step_engine.h"

#include <cstring>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "backends/cpu/cpu_decoder.h"
#include "backends/cpu/kv_offload_io.h"
#include "base/status_macros.h"
#include "gtest/gtest.h"
#include "runtime/generation.h"

namespace apr {
namespace {

// A stand-in storage node: blocks in a map per sequence. Restart() loses every block and
// makes the old sequences' offloads fail, as a killed and restarted node does; while
// down, nothing can be stored at all.
struct FakeStore {
  int incarnation = 0;
  bool up = true;
  void Restart() { ++incarnation; }
};

class FakeOffload : public KvOffload {
 public:
  FakeOffload(FakeStore* store, int64_t block_bytes)
      : store_(store), incarnation_(store->incarnation), block_bytes_(block_bytes) {}
  int64_t block_bytes() const override { return block_bytes_; }
  absl::Status WriteBlocks(absl::Span<const KvBlockRef> blocks,
                           absl::Span<const void* const> data) override {
    APR_RETURN_IF_ERROR(Check());
    for (size_t i = 0; i < blocks.size(); ++i) {
      const char* p = static_cast<const char*>(data[i]);
      blocks_[Key(blocks[i])].assign(p, p + block_bytes_);
    }
    return absl::OkStatus();
  }
  absl::Status ReadBlocks(absl::Span<const KvBlockRef> blocks,
                          absl::Span<void* const> dst) override {
    APR_RETURN_IF_ERROR(Check());
    for (size_t i = 0; i < blocks.size(); ++i) {
      std::memcpy(dst[i], blocks_.at(Key(blocks[i])).data(), block_bytes_);
    }
    ++reads;
    return absl::OkStatus();
  }
  static int reads;

 private:
  absl::Status Check() const {
    if (!store_->up || store_->incarnation != incarnation_) {
      return absl::UnavailableError("the fake store lost this sequence");
    }
    return absl::OkStatus();
  }
  static std::tuple<int64_t, int64_t, int64_t> Key(const KvBlockRef& r) {
    return {r.layer, r.kv_head, r.block};
  }
  FakeStore* store_;
  const int incarnation_;
  const int64_t block_bytes_;
  std::map<std::tuple<int64_t, int64_t, int64_t>, std::vector<char>> blocks_;
};
int FakeOffload::reads = 0;

class StepEngineRecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = cpu::CpuDecoder::Load("models/apr-tiny");
    ASSERT_TRUE(d.ok()) << d.status();
    decoder_ = *std::move(d);
    DecoderStepEngineOptions o;
    o.new_sequence = [this](uint64_t) -> absl::StatusOr<OwnedSequence> {
      if (!store_.up) return absl::UnavailableError("the fake store is down");
      auto offload = std::make_shared<FakeOffload>(
          &store_, cpu::OffloadBlockBytes(decoder_->config().head_dim));
      auto seq = decoder_->NewOffloadedSequence(offload.get());
      if (!seq.ok()) return seq.status();
      return OwnedSequence{offload, *std::move(seq)};
    };
    o.recoverable = [](const absl::Status& s) {
      return s.code() == absl::StatusCode::kUnavailable;
    };
    engine_ = std::make_unique<DecoderStepEngine>(*decoder_, std::move(o));
  }

  // Prompts longer than a block, so that steps read blocks back from the store.
  static std::vector<int32_t> Prompt(int i) {
    std::vector<int32_t> p;
    for (int k = 0; k < 19 + 11 * i; ++k) p.push_back(3 + (97 * k + 389 * i) % 3000);
    return p;
  }
  static SamplingParams Sampling(int i) {
    return {i == 0 ? 0.0f : 0.8f, i == 2 ? 40 : 0, 1.0f, static_cast<uint64_t>(7 + i)};
  }
  std::vector<int32_t> Reference(int i, int64_t tokens) {
    GenerationOptions o;
    o.max_new_tokens = tokens;
    o.sampling = Sampling(i);
    auto seq = decoder_->NewSequence();
    auto r = Generate(*decoder_, *seq, Prompt(i), o, nullptr);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->tokens : std::vector<int32_t>{};
  }
  // Starts sequences 0..n-1; their first tokens go to out[i].
  void StartAll(int n, std::vector<std::vector<int32_t>>& out) {
    out.assign(n, {});
    for (int i = 0; i < n; ++i) {
      auto t = engine_->Start(i, Prompt(i), Sampling(i));
      ASSERT_TRUE(t.ok()) << t.status();
      out[i].push_back(*t);
    }
  }
  absl::Status StepAll(std::vector<std::vector<int32_t>>& out) {
    std::vector<uint64_t> ids;
    std::vector<int32_t> tokens;
    for (size_t i = 0; i < out.size(); ++i) ids.push_back(i), tokens.push_back(out[i].back());
    auto next = engine_->Step(ids, tokens);
    if (!next.ok()) return next.status();
    for (size_t i = 0; i < out.size(); ++i) out[i].push_back((*next)[i]);
    return absl::OkStatus();
  }

  std::unique_ptr<cpu::CpuDecoder> decoder_;
  FakeStore store_;
  std::unique_ptr<DecoderStepEngine> engine_;
};

TEST_F(StepEngineRecoveryTest, RebuiltSequencesContinueWithTheUninterruptedTokens) {
  constexpr int kSeqs = 3, kTokens = 40;
  // An engine over in-process sequences, fed the same calls: the logits of every call,
  // the one that rebuilt its sequences included, must be bit-identical to the reference's.
  DecoderStepEngine reference(*decoder_);
  std::vector<std::vector<int32_t>> got;
  StartAll(kSeqs, got);
  for (int i = 0; i < kSeqs; ++i) ASSERT_TRUE(reference.Start(i, Prompt(i), Sampling(i)).ok());
  auto step_both = [&] {
    std::vector<uint64_t> ids;
    std::vector<int32_t> tokens;
    for (int i = 0; i < kSeqs; ++i) ids.push_back(i), tokens.push_back(got[i].back());
    ASSERT_TRUE(StepAll(got).ok());
    ASSERT_TRUE(reference.Step(ids, tokens).ok());
    ASSERT_EQ(engine_->last_logits(), reference.last_logits()) << "after " << got[0].size();
  };
  for (int s = 0; s < 15; ++s) step_both();
  const int reads_before = FakeOffload::reads;
  store_.Restart();
  while (got[0].size() < kTokens) step_both();
  EXPECT_GT(FakeOffload::reads, reads_before) << "later steps must read from the new store";
  for (int i = 0; i < kSeqs; ++i) EXPECT_EQ(got[i], Reference(i, kTokens)) << "sequence " << i;
  EXPECT_EQ(engine_->stats().recoveries, 1);
  EXPECT_EQ(engine_->stats().rebuilt, kSeqs);
  // Each history: the prompt and the 16 tokens fed by the 16th step (the failed one).
  int64_t history = 0;
  for (int i = 0; i < kSeqs; ++i) history += static_cast<int64_t>(Prompt(i).size()) + 16;
  EXPECT_EQ(engine_->stats().replayed_tokens, history);
}

TEST_F(StepEngineRecoveryTest, StoreThatStaysDownFailsTheStepAndLeavesNoBrokenSequence) {
  std::vector<std::vector<int32_t>> got;
  StartAll(2, got);
  ASSERT_TRUE(StepAll(got).ok());
  store_.up = false;
  absl::Status s = StepAll(got);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("the fake store is down"), absl::string_view::npos) << s;
  // The same sequences again: a clear refusal, not a crash on a missing sequence.
  s = StepAll(got);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  const std::vector<uint64_t> ids = {0, 1};
  engine_->Free(ids);
  EXPECT_EQ(engine_->live_sequences(), 0);
  // A new sequence waits for the store no longer than new_sequence says.
  EXPECT_EQ(engine_->Start(5, Prompt(0), Sampling(0)).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(StepEngineRecoveryTest, OtherErrorsAreNotRetried) {
  std::vector<std::vector<int32_t>> got;
  StartAll(1, got);
  got[0].back() = decoder_->config().vocab_size + 5;  // outside the vocabulary
  EXPECT_EQ(StepAll(got).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->stats().recoveries, 0);
  EXPECT_EQ(engine_->stats().rebuilt, 0);
}

// Without kept logits, greedy rows take the decoder's picks (DecodeBatchArgMax) and the
// logits come back only while some row samples; the tokens are the uninterrupted
// Generate's either way, through a rebuild too (whose greedy rows sample from the
// rebuilt logits instead).
TEST_F(StepEngineRecoveryTest, GreedyPicksWithoutLogitsGiveTheSameTokens) {
  constexpr int kSeqs = 3, kTokens = 30;
  engine_->set_keep_logits(false);
  std::vector<std::vector<int32_t>> got;
  StartAll(kSeqs, got);
  for (int s = 0; s < 10; ++s) {
    ASSERT_TRUE(StepAll(got).ok());
    EXPECT_FALSE(engine_->last_logits().empty()) << "rows 1 and 2 sample from the logits";
  }
  store_.Restart();
  while (got[0].size() < kTokens) ASSERT_TRUE(StepAll(got).ok());
  EXPECT_GT(engine_->stats().rebuilt, 0);
  for (int i = 0; i < kSeqs; ++i) EXPECT_EQ(got[i], Reference(i, kTokens)) << "sequence " << i;

  // Greedy rows only: no logits at all, the same tokens.
  engine_->Free(std::vector<uint64_t>{0, 1, 2});
  auto first = engine_->Start(7, Prompt(0), Sampling(0));
  ASSERT_TRUE(first.ok()) << first.status();
  std::vector<int32_t> greedy{*first};
  while (greedy.size() < kTokens) {
    auto next = engine_->Step(std::vector<uint64_t>{7}, std::vector<int32_t>{greedy.back()});
    ASSERT_TRUE(next.ok()) << next.status();
    greedy.push_back((*next)[0]);
    EXPECT_TRUE(engine_->last_logits().empty());
  }
  EXPECT_EQ(greedy, Reference(0, kTokens));
}

// Forwards to a decoder and records, at each EndPrompt, the sequence's length then.
class EndPromptRecorder : public Decoder {
 public:
  explicit EndPromptRecorder(Decoder& inner) : inner_(inner) {}
  const ModelConfig& config() const override { return inner_.config(); }
  std::string device() const override { return inner_.device(); }
  std::unique_ptr<Sequence> NewSequence(AttentionHooks* hooks) override {
    return inner_.NewSequence(hooks);
  }
  absl::Status Prefill(Sequence& seq, absl::Span<const int32_t> tokens, std::vector<float>* last,
                       std::vector<float>* all) override {
    return inner_.Prefill(seq, tokens, last, all);
  }
  void EndPrompt(Sequence& seq) override { ended_at.push_back(seq.length()); }
  absl::Status DecodeBatch(absl::Span<Sequence* const> seqs, absl::Span<const int32_t> tokens,
                           std::vector<float>* logits) override {
    return inner_.DecodeBatch(seqs, tokens, logits);
  }
  std::vector<int64_t> ended_at;

 private:
  Decoder& inner_;
};

// The engine tells the decoder when a prompt ends (the CUDA backend frees the prompt's
// staging copy there): once, after the last part, not after earlier parts or steps.
TEST_F(StepEngineRecoveryTest, EndPromptFollowsTheLastPartOnly) {
  EndPromptRecorder recorder(*decoder_);
  DecoderStepEngine engine(recorder);
  const std::vector<int32_t> prompt = Prompt(0);
  ASSERT_GT(prompt.size(), 2u);
  const absl::Span<const int32_t> all = prompt;
  const size_t half = prompt.size() / 2;
  auto first = engine.StartPart(5, all.subspan(0, half), Sampling(0), PromptPart{true, false});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(recorder.ended_at.empty());
  auto token = engine.StartPart(5, all.subspan(half), Sampling(0), PromptPart{false, true});
  ASSERT_TRUE(token.ok()) << token.status();
  ASSERT_EQ(recorder.ended_at, std::vector<int64_t>{static_cast<int64_t>(prompt.size())});
  ASSERT_TRUE(engine.Step(std::vector<uint64_t>{5}, std::vector<int32_t>{*token}).ok());
  EXPECT_EQ(recorder.ended_at.size(), 1u);
}

}  // namespace
}  // namespace apr
