#include "runtime/scheduler.h"

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "backends/cpu/cpu_decoder.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/generation.h"

namespace apr {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

// A prompt's last part answers its last token + 1, each step the input token + 1; records
// each step's ids and each prompt part's (id, tokens) in call order.
class FakeEngine : public StepEngine {
 public:
  int64_t max_context() const override { return context; }
  absl::StatusOr<int32_t> StartPart(uint64_t id, absl::Span<const int32_t> tokens,
                                    const SamplingParams&, PromptPart part) override {
    if (part.first) started.push_back(id);
    parts.emplace_back(id, static_cast<int64_t>(tokens.size()));
    calls.push_back(absl::StrCat("part ", id, ":", tokens.size()));
    live.insert(id);
    if (on_start) on_start();
    if (fail_part == static_cast<int>(parts.size())) return absl::InternalError("part boom");
    return part.last ? tokens.back() + 1 : kPromptContinues;
  }
  absl::StatusOr<std::vector<int32_t>> Step(absl::Span<const uint64_t> ids,
                                            absl::Span<const int32_t> tokens) override {
    steps.emplace_back(ids.begin(), ids.end());
    calls.push_back(absl::StrCat("step ", ids.size()));
    if (on_step) on_step();
    if (fail_step == static_cast<int>(steps.size())) return absl::InternalError("boom");
    std::vector<int32_t> next;
    for (int32_t t : tokens) next.push_back(t + 1);
    return next;
  }
  void Free(absl::Span<const uint64_t> ids) override {
    for (uint64_t id : ids) live.erase(id);
  }

  int64_t context = 1000;
  int fail_step = -1;
  int fail_part = -1;              // the n-th prompt part (1-based) fails
  std::function<void()> on_start;  // called inside StartPart (a prefill in progress)
  std::function<void()> on_step;   // called inside Step
  std::vector<uint64_t> started;
  std::vector<std::pair<uint64_t, int64_t>> parts;
  std::vector<std::string> calls;  // "part id:tokens" and "step batch", in order
  std::vector<std::vector<uint64_t>> steps;
  absl::flat_hash_set<uint64_t> live;
};

struct Outcome {
  std::vector<int32_t> streamed;
  absl::StatusOr<ScheduledResult> result = absl::UnknownError("not done");
  int done_calls = 0;
};

SchedulerRequest Request(std::vector<int32_t> prompt, int64_t max_tokens, Outcome* out) {
  SchedulerRequest r;
  r.prompt = std::move(prompt);
  r.options.max_new_tokens = max_tokens;
  r.on_token = [out](int32_t t) {
    out->streamed.push_back(t);
    return true;
  };
  r.on_done = [out](absl::StatusOr<ScheduledResult> res) {
    out->result = std::move(res);
    ++out->done_calls;
  };
  return r;
}

void RunAll(Scheduler& s) {
  for (int i = 0; i < 1000 && s.RunOnce(); ++i) {
  }
}

TEST(SchedulerTest, NewSequencesJoinAndFinishedOnesLeave) {
  FakeEngine engine;
  Scheduler s(engine, {.max_batch_size = 2});
  Outcome a, b, c;
  ASSERT_TRUE(s.Submit(Request({10}, 2, &a)).ok());  // id 1: 11, 12
  ASSERT_TRUE(s.Submit(Request({20}, 4, &b)).ok());  // id 2: 21 .. 24
  ASSERT_TRUE(s.Submit(Request({30}, 2, &c)).ok());  // id 3: waits for a's slot
  RunAll(s);
  EXPECT_THAT(a.streamed, ElementsAre(11, 12));
  EXPECT_THAT(b.streamed, ElementsAre(21, 22, 23, 24));
  EXPECT_THAT(c.streamed, ElementsAre(31, 32));
  // Step 1: a and b; a leaves; c joins before step 2; c leaves after it; b runs alone.
  EXPECT_THAT(engine.steps, ElementsAre(ElementsAre(1, 2), ElementsAre(2, 3), ElementsAre(2)));
  EXPECT_TRUE(engine.live.empty());
  for (Outcome* o : {&a, &b, &c}) {
    ASSERT_TRUE(o->result.ok());
    EXPECT_EQ(o->done_calls, 1);
    EXPECT_EQ(o->result->generation.stop, StopReason::kMaxTokens);
    EXPECT_EQ(o->result->generation.tokens, o->streamed);
  }
}

TEST(SchedulerTest, AdmitsInSubmissionOrder) {
  FakeEngine engine;
  Scheduler s(engine, {.max_batch_size = 1});
  std::vector<Outcome> out(5);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(s.Submit(Request({i * 10}, 2, &out[i])).ok());
  RunAll(s);
  EXPECT_THAT(engine.started, ElementsAre(1, 2, 3, 4, 5));
  for (const auto& step : engine.steps) EXPECT_EQ(step.size(), 1u);
}

TEST(SchedulerTest, StopTokenEndsWithTheStopToken) {
  FakeEngine engine;
  Scheduler s(engine, {});
  Outcome a;
  SchedulerRequest r = Request({0}, 100, &a);
  r.options.stop_token_ids = {3};
  ASSERT_TRUE(s.Submit(std::move(r)).ok());
  RunAll(s);
  ASSERT_TRUE(a.result.ok());
  EXPECT_THAT(a.result->generation.tokens, ElementsAre(1, 2, 3));
  EXPECT_EQ(a.result->generation.stop, StopReason::kStopToken);
}

TEST(SchedulerTest, MaxTokensZeroGeneratesNothing) {
  FakeEngine engine;
  Scheduler s(engine, {});
  Outcome a;
  ASSERT_TRUE(s.Submit(Request({5}, 0, &a)).ok());
  RunAll(s);
  ASSERT_TRUE(a.result.ok());
  EXPECT_TRUE(a.result->generation.tokens.empty());
  EXPECT_EQ(a.result->generation.stop, StopReason::kMaxTokens);
  EXPECT_TRUE(engine.started.empty());
}

TEST(SchedulerTest, ContextFullStopsAtTheModelLength) {
  FakeEngine engine;
  engine.context = 5;
  Scheduler s(engine, {});
  Outcome a;
  ASSERT_TRUE(s.Submit(Request({1, 2, 3}, 100, &a)).ok());
  RunAll(s);
  ASSERT_TRUE(a.result.ok());
  // Prompt 3 + tokens decoded: the third token is sampled when the cache holds 5.
  EXPECT_THAT(a.result->generation.tokens, ElementsAre(4, 5, 6));
  EXPECT_EQ(a.result->generation.stop, StopReason::kContextFull);
}

TEST(SchedulerTest, CancelQueuedAndRunning) {
  FakeEngine engine;
  Scheduler s(engine, {.max_batch_size = 1});
  Outcome a, b;
  auto ida = s.Submit(Request({0}, 100, &a));
  auto idb = s.Submit(Request({50}, 100, &b));
  ASSERT_TRUE(ida.ok() && idb.ok());
  s.RunOnce();  // a runs, b waits
  s.Cancel(*idb);
  s.RunOnce();
  ASSERT_TRUE(b.result.ok());
  EXPECT_EQ(b.result->generation.stop, StopReason::kCancelled);
  EXPECT_TRUE(b.streamed.empty());
  s.Cancel(*ida);
  s.RunOnce();
  ASSERT_TRUE(a.result.ok());
  EXPECT_EQ(a.result->generation.stop, StopReason::kCancelled);
  EXPECT_FALSE(s.RunOnce());
  EXPECT_TRUE(engine.live.empty());
  s.Cancel(12345);  // unknown: ignored
  s.RunOnce();
  EXPECT_EQ(a.done_calls + b.done_calls, 2);
}

TEST(SchedulerTest, OnTokenFalseCancels) {
  FakeEngine engine;
  Scheduler s(engine, {});
  Outcome a;
  SchedulerRequest r = Request({0}, 100, &a);
  r.on_token = [&a](int32_t t) {
    a.streamed.push_back(t);
    return t < 3;
  };
  ASSERT_TRUE(s.Submit(std::move(r)).ok());
  RunAll(s);
  ASSERT_TRUE(a.result.ok());
  EXPECT_THAT(a.result->generation.tokens, ElementsAre(1, 2, 3));
  EXPECT_EQ(a.result->generation.stop, StopReason::kCancelled);
}

TEST(SchedulerTest, RejectsBadRequestsAndAFullQueue) {
  FakeEngine engine;
  engine.context = 4;
  Scheduler s(engine, {.max_batch_size = 1, .max_queue_size = 2});
  Outcome o;
  EXPECT_EQ(s.Submit(Request({}, 1, &o)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.Submit(Request({1, 2, 3, 4, 5}, 1, &o)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.Submit(Request({1}, -1, &o)).status().code(), absl::StatusCode::kInvalidArgument);
  SchedulerRequest bad = Request({1}, 1, &o);
  bad.options.sampling.top_p = 0;
  EXPECT_EQ(s.Submit(std::move(bad)).status().code(), absl::StatusCode::kInvalidArgument);
  Outcome a, b, c;
  ASSERT_TRUE(s.Submit(Request({1}, 1, &a)).ok());
  ASSERT_TRUE(s.Submit(Request({1}, 1, &b)).ok());
  EXPECT_EQ(s.Submit(Request({1}, 1, &c)).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(o.done_calls, 0);
  s.Stop();  // a and b end (cancelled) while their outcomes are alive
  EXPECT_EQ(a.done_calls + b.done_calls + c.done_calls, 2);
}

TEST(SchedulerTest, AStepErrorFailsTheBatchOnly) {
  FakeEngine engine;
  engine.fail_step = 1;
  Scheduler s(engine, {.max_batch_size = 2});
  Outcome a, b, c;
  ASSERT_TRUE(s.Submit(Request({0}, 5, &a)).ok());
  ASSERT_TRUE(s.Submit(Request({0}, 5, &b)).ok());
  ASSERT_TRUE(s.Submit(Request({0}, 3, &c)).ok());
  RunAll(s);
  EXPECT_EQ(a.result.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(b.result.status().code(), absl::StatusCode::kInternal);
  ASSERT_TRUE(c.result.ok());
  EXPECT_THAT(c.result->generation.tokens, ElementsAre(1, 2, 3));
  EXPECT_TRUE(engine.live.empty());
}

TEST(SchedulerTest, StopCancelsEverythingLeft) {
  FakeEngine engine;
  Scheduler s(engine, {.max_batch_size = 1});
  Outcome a, b;
  ASSERT_TRUE(s.Submit(Request({0}, 100, &a)).ok());
  ASSERT_TRUE(s.Submit(Request({0}, 100, &b)).ok());
  s.RunOnce();
  s.Stop();
  for (Outcome* o : {&a, &b}) {
    ASSERT_TRUE(o->result.ok());
    EXPECT_EQ(o->result->generation.stop, StopReason::kCancelled);
    EXPECT_EQ(o->done_calls, 1);
  }
  EXPECT_TRUE(engine.live.empty());
  EXPECT_EQ(s.Submit(Request({0}, 1, &a)).status().code(), absl::StatusCode::kFailedPrecondition);
}

// The front end routes a request to the group with the fewest queued plus running
// requests: one being prefilled has left the queue and must count as running.
TEST(SchedulerTest, RequestsBeingPrefilledCountAsRunning) {
  FakeEngine engine;
  Scheduler s(engine, {.max_batch_size = 4});
  std::vector<SchedulerStats> during;
  engine.on_start = [&] { during.push_back(s.stats()); };
  Outcome a, b, c;
  ASSERT_TRUE(s.Submit(Request({1}, 3, &a)).ok());
  ASSERT_TRUE(s.Submit(Request({2}, 3, &b)).ok());
  s.RunOnce();  // admits a and b together
  ASSERT_TRUE(s.Submit(Request({3}, 3, &c)).ok());
  s.RunOnce();  // c joins a and b
  ASSERT_EQ(during.size(), 3u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(during[i].queue_depth, 0) << "prefill " << i;
    EXPECT_EQ(during[i].running, 2) << "prefill " << i;
  }
  EXPECT_EQ(during[2].queue_depth, 0);
  EXPECT_EQ(during[2].running, 3);
  RunAll(s);
  EXPECT_EQ(s.stats().running, 0);
  EXPECT_EQ(s.stats().requests_finished, 3);
}

TEST(SchedulerTest, ThreadServesConcurrentSubmitters) {
  FakeEngine engine;
  Scheduler s(engine, {.max_batch_size = 3});
  s.Start();
  constexpr int kClients = 6;
  std::vector<Outcome> out(kClients);
  std::vector<absl::Notification> done(kClients);
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      SchedulerRequest r = Request({i * 100}, 10 + i, &out[i]);
      auto inner = r.on_done;
      r.on_done = [&, i, inner](absl::StatusOr<ScheduledResult> res) {
        inner(std::move(res));
        done[i].Notify();
      };
      ASSERT_TRUE(s.Submit(std::move(r)).ok());
    });
  }
  for (auto& t : clients) t.join();
  for (auto& d : done) ASSERT_TRUE(d.WaitForNotificationWithTimeout(absl::Seconds(30)));
  s.Stop();
  for (int i = 0; i < kClients; ++i) {
    ASSERT_TRUE(out[i].result.ok());
    ASSERT_EQ(out[i].streamed.size(), static_cast<size_t>(10 + i));
    for (int k = 0; k < 10 + i; ++k) EXPECT_EQ(out[i].streamed[k], i * 100 + k + 1);
  }
  for (const auto& step : engine.steps) EXPECT_LE(step.size(), 3u);
  EXPECT_EQ(s.stats().requests_finished, kClients);
}

TEST(PromptPartsTest, ChunksWithTheShortTailJoined) {
  EXPECT_EQ(NextPromptPartEnd(1000, 0, 0), 1000);  // no chunking
  EXPECT_EQ(NextPromptPartEnd(1000, 0, 256), 256);
  EXPECT_EQ(NextPromptPartEnd(1000, 512, 256), 768);  // 232 left: a part of its own
  EXPECT_EQ(NextPromptPartEnd(1000, 768, 256), 1000);
  EXPECT_EQ(NextPromptPartEnd(300, 0, 256), 300);  // a 44-token tail joins
  EXPECT_EQ(NextPromptPartEnd(319, 0, 256), 319);  // 63 left: joins
  EXPECT_EQ(NextPromptPartEnd(320, 0, 256), 256);  // 64 = kHistoryRows left: a part
  EXPECT_EQ(NextPromptPartEnd(256, 0, 256), 256);
  EXPECT_EQ(NextPromptPartEnd(10, 0, 256), 10);
}

// A long prompt is prefilled one chunk per iteration, each followed by the running
// batch's step; the parts' tokens add up to the prompt and the first token is sampled
// after the last part.
TEST(SchedulerTest, ChunkedAdmissionInterleavesWithDecodeSteps) {
  FakeEngine engine;
  Scheduler s(engine, {.max_batch_size = 4, .prefill_chunk_tokens = 100});
  Outcome a, b;
  ASSERT_TRUE(s.Submit(Request({5, 6, 7}, 10, &a)).ok());
  s.RunOnce();
  std::vector<int32_t> long_prompt(250);
  for (int i = 0; i < 250; ++i) long_prompt[i] = 1000 + i;
  ASSERT_TRUE(s.Submit(Request(long_prompt, 2, &b)).ok());
  s.RunOnce();
  s.RunOnce();
  EXPECT_THAT(engine.calls, ElementsAre("part 1:3", "step 1", "part 2:100", "step 1", "part 2:150",
                                        "step 2"));  // 50-token tail joined
  RunAll(s);
  ASSERT_TRUE(b.result.ok()) << b.result.status();
  EXPECT_THAT(b.streamed, ElementsAre(1250, 1251));
  ASSERT_TRUE(a.result.ok());
  EXPECT_EQ(a.streamed.size(), 10u);
  EXPECT_TRUE(engine.live.empty());
}

// The chunk is a token budget per iteration: short prompts share it; a part that does
// not fit what is left waits for the next iteration.
TEST(SchedulerTest, ChunkBudgetIsSharedByShortPrompts) {
  FakeEngine engine;
  std::vector<Outcome> out(4);  // outlives the scheduler, whose Stop() still reports
  Scheduler s(engine, {.max_batch_size = 8, .prefill_chunk_tokens = 100});
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(s.Submit(Request(std::vector<int32_t>(30, i), 1, &out[i])).ok());
  ASSERT_TRUE(s.Submit(Request(std::vector<int32_t>(200, 9), 3, &out[3])).ok());
  s.RunOnce();
  s.RunOnce();
  s.RunOnce();
  // The third iteration's step is the first: until then nothing runs (the short requests
  // end with their first token).
  EXPECT_THAT(engine.calls, ElementsAre("part 1:30", "part 2:30", "part 3:30", "part 4:100",
                                        "part 4:100", "step 1"));
}

TEST(SchedulerTest, CancelOrFailureDuringChunkedAdmissionFreesTheSequence) {
  FakeEngine engine;
  Scheduler s(engine, {.max_batch_size = 4, .prefill_chunk_tokens = 100});
  Outcome a, b;
  const auto id = s.Submit(Request(std::vector<int32_t>(400, 3), 4, &a));
  ASSERT_TRUE(id.ok());
  s.RunOnce();
  EXPECT_TRUE(engine.live.contains(*id));
  s.Cancel(*id);
  s.RunOnce();
  ASSERT_TRUE(a.result.ok());
  EXPECT_EQ(a.result->generation.stop, StopReason::kCancelled);
  EXPECT_TRUE(a.streamed.empty());
  EXPECT_TRUE(engine.live.empty());

  engine.fail_part = static_cast<int>(engine.parts.size()) + 2;  // b's second part
  ASSERT_TRUE(s.Submit(Request(std::vector<int32_t>(400, 3), 4, &b)).ok());
  RunAll(s);
  EXPECT_EQ(b.result.status().message(), "part boom");
  EXPECT_EQ(b.done_calls, 1);
  EXPECT_TRUE(engine.live.empty());
}

// While sequences run, prefill parts take at most max_prefill_share of the time: every
// part but the last is paid for by share / (1 - share) times as much decode time. The
// times are the engine's own (a part sleeps 40 ms, a step 5 ms), with 1 ms a step for the
// scheduler's own work.
TEST(SchedulerTest, PrefillShareIsBoundedWhileSequencesRun) {
  FakeEngine engine;
  using Clock = std::chrono::steady_clock;
  double part_s = 0, last_part_s = 0, step_s = 0;
  int steps = 0;
  engine.on_start = [&] {
    const auto t0 = Clock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(40));
    last_part_s = std::chrono::duration<double>(Clock::now() - t0).count();
    part_s += last_part_s;
  };
  engine.on_step = [&] {
    const auto t0 = Clock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    step_s += std::chrono::duration<double>(Clock::now() - t0).count();
    ++steps;
  };
  Outcome a, b;
  Scheduler s(engine, {.max_batch_size = 4, .prefill_chunk_tokens = 100, .max_prefill_share = 0.5});
  ASSERT_TRUE(s.Submit(Request({1}, 1000, &a)).ok());
  s.RunOnce();  // a runs: from here on parts are throttled
  part_s = step_s = 0;
  steps = 0;
  ASSERT_TRUE(s.Submit(Request(std::vector<int32_t>(600, 2), 1, &b)).ok());
  for (int i = 0; i < 500 && !b.result.ok(); ++i) s.RunOnce();
  ASSERT_TRUE(b.result.ok());
  const int parts = static_cast<int>(engine.parts.size()) - 1;
  EXPECT_EQ(parts, 6);
  EXPECT_GE(steps, parts - 1);
  EXPECT_LE(part_s - last_part_s, step_s + steps * 0.001) << steps << " steps";
  // A part needs about 40 ms of 5 ms steps (fewer only if the machine stretches a step
  // past 20 ms).
  EXPECT_GE(steps, 2 * (parts - 1));
}

// The bundled model, batched by the scheduler, against the single-sequence loop of
// generation.h with the same seeds: every request gets exactly the tokens it would get
// alone, whatever else shares its steps.
class BundledModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto d = cpu::CpuDecoder::Load("models/apr-tiny");
    ASSERT_TRUE(d.ok()) << d.status();
    decoder_ = d->release();
  }
  static void TearDownTestSuite() { delete decoder_; }

  struct Case {
    std::vector<int32_t> prompt;
    GenerationOptions options;
  };

  static std::vector<Case> Cases() {
    std::vector<Case> cases;
    for (int i = 0; i < 6; ++i) {
      Case c;
      for (int k = 0; k < 3 + 7 * i; ++k) c.prompt.push_back(2 + (37 * k + 101 * i) % 4000);
      c.options.max_new_tokens = 6 + 5 * (i % 3);
      c.options.sampling = {i % 2 == 0 ? 0.0f : 0.9f, i == 3 ? 40 : 0, i == 5 ? 0.9f : 1.0f,
                            static_cast<uint64_t>(1000 + i)};
      c.options.stop_token_ids = {1};
      cases.push_back(c);
    }
    return cases;
  }

  // Prompts of 200 to 520 tokens, greedy: several parts each with 128-token chunks.
  static std::vector<Case> LongCases() {
    std::vector<Case> cases;
    for (int i = 0; i < 4; ++i) {
      Case c;
      for (int k = 0; k < 200 + 107 * i; ++k) c.prompt.push_back(2 + (53 * k + 31 * i) % 4000);
      c.options.max_new_tokens = 8;
      c.options.sampling.temperature = 0;
      cases.push_back(c);
    }
    return cases;
  }

  static std::vector<std::vector<int32_t>> Scheduled(int max_batch) {
    return Scheduled({.max_batch_size = max_batch}, Cases());
  }
  static std::vector<std::vector<int32_t>> Scheduled(SchedulerOptions options,
                                                     const std::vector<Case>& cases) {
    DecoderStepEngine engine(*decoder_);
    Scheduler s(engine, options);
    std::vector<Outcome> out(cases.size());
    for (size_t i = 0; i < cases.size(); ++i) {
      SchedulerRequest r = Request(cases[i].prompt, 0, &out[i]);
      r.options = cases[i].options;
      EXPECT_TRUE(s.Submit(std::move(r)).ok());
    }
    RunAll(s);
    std::vector<std::vector<int32_t>> tokens;
    for (auto& o : out) {
      EXPECT_TRUE(o.result.ok()) << o.result.status();
      EXPECT_EQ(o.result->generation.tokens, o.streamed);
      tokens.push_back(o.streamed);
    }
    EXPECT_EQ(engine.live_sequences(), 0);
    return tokens;
  }

  static Decoder* decoder_;
};

Decoder* BundledModelTest::decoder_ = nullptr;

TEST_F(BundledModelTest, BatchedTokensEqualOneAtATimeGeneration) {
  const std::vector<std::vector<int32_t>> batched = Scheduled(/*max_batch=*/4);
  const std::vector<Case> cases = Cases();
  for (size_t i = 0; i < cases.size(); ++i) {
    auto seq = decoder_->NewSequence();
    auto ref = Generate(*decoder_, *seq, cases[i].prompt, cases[i].options, nullptr);
    ASSERT_TRUE(ref.ok()) << ref.status();
    EXPECT_THAT(batched[i], ElementsAreArray(ref->tokens)) << "request " << i;
  }
}

// Chunked admission prefills a prompt in parts between other sequences' steps; the
// tokens are those of the whole prompt prefilled at once, alone.
TEST_F(BundledModelTest, ChunkedAdmissionGivesTheWholePromptsTokens) {
  const std::vector<Case> cases = LongCases();
  const std::vector<std::vector<int32_t>> chunked =
      Scheduled({.max_batch_size = 4, .prefill_chunk_tokens = 128}, cases);
  for (size_t i = 0; i < cases.size(); ++i) {
    auto seq = decoder_->NewSequence();
    auto ref = Generate(*decoder_, *seq, cases[i].prompt, cases[i].options, nullptr);
    ASSERT_TRUE(ref.ok()) << ref.status();
    EXPECT_THAT(chunked[i], ElementsAreArray(ref->tokens)) << "request " << i;
  }
}

TEST_F(BundledModelTest, SeedsAreReproducibleAcrossBatchSizes) {
  EXPECT_EQ(Scheduled(/*max_batch=*/1), Scheduled(/*max_batch=*/6));
}

}  // namespace
}  // namespace apr
