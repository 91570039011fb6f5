// Faults on a launched cluster (docs/RELIABILITY.md): a worker killed mid-generation
// (its group is reported unhealthy, its streams fail with UNAVAILABLE naming it, the
// other group keeps serving, and its streams get exactly the reference tokens); client
// cancellation and deadlines free the sequences on the worker at once.
#include <signal.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "backends/cpu/cpu_decoder.h"
#include "cluster/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rpc/worker/v1/worker.grpc.pb.h"
#include "runtime/generation.h"
#include "tests/reliability/concurrent_streams.h"
#include "tests/reliability/harness.h"

namespace apr::reliability {
namespace {

namespace gv1 = ::apr::generation::v1;
namespace wv1 = ::apr::worker::v1;
using cluster::ConnectGeneration;
using ::testing::HasSubstr;

std::vector<int32_t> Prompt(int i) {
  std::vector<int32_t> p;
  for (int k = 0; k < 6 + i; ++k) p.push_back(2 + (97 * k + 389 * i) % 4000);
  return p;
}

gv1::GenerateRequest Request(int i, int64_t max_tokens) {
  gv1::GenerateRequest r;
  const std::vector<int32_t> p = Prompt(i);
  r.mutable_token_ids()->mutable_ids()->Add(p.begin(), p.end());
  r.set_max_tokens(max_tokens);
  r.set_ignore_eos(true);
  r.mutable_sampling()->set_temperature(0.8f);
  r.mutable_sampling()->set_seed(1000 + i);
  r.set_request_id(absl::StrCat("s", i));
  return r;
}

std::vector<int32_t> Reference(Decoder& d, int i, int64_t max_tokens) {
  GenerationOptions o;
  o.max_new_tokens = max_tokens;
  o.sampling = {0.8f, 0, 1.0f, static_cast<uint64_t>(1000 + i)};
  auto seq = d.NewSequence();
  auto r = Generate(d, *seq, Prompt(i), o, nullptr);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->tokens : std::vector<int32_t>{};
}

gv1::HealthResponse FrontEndHealth(const std::string& address) {
  auto stub = ConnectGeneration(address);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  gv1::HealthResponse h;
  EXPECT_TRUE(stub->Health(&ctx, gv1::HealthRequest(), &h).ok());
  return h;
}

TEST(FaultTest, AKilledWorkerFailsItsStreamsCleanlyAndTheOtherGroupServes) {
  constexpr int kStreams = 8;
  constexpr int64_t kTokens = 400;
  auto decoder = cpu::CpuDecoder::Load("models/apr-tiny");
  ASSERT_TRUE(decoder.ok()) << decoder.status();

  // Batches hold every stream: with batches of 4, routing 5 streams to one group made the
  // 5th wait for a finished one, and the kill could come after g1's streams were done.
  Launch launch("worker-kill",
                LocalConfig(2, kStreams, "", "", "keep_serving_after_worker_exit: true"));
  const int port = launch.WaitReady(absl::Seconds(90));
  ASSERT_GT(port, 0) << launch.Log();
  const std::string address = absl::StrCat("127.0.0.1:", port);

  const std::optional<pid_t> victim = launch.ChildPid("--name=g1/0");
  ASSERT_TRUE(victim.has_value());
  ConcurrentStreams s(kStreams);
  s.Start(
      address, [&](int i) { return Request(i, kTokens); }, /*timeout=*/120);
  ASSERT_TRUE(s.AwaitStarted(kStreams, absl::Seconds(60)));
  const absl::Time killed = absl::Now();
  ASSERT_EQ(kill(*victim, SIGKILL), 0);
  s.Join();

  int failed = 0, finished = 0;
  for (int i = 0; i < kStreams; ++i) {
    if (s.result[i].ok()) {
      ++finished;
      EXPECT_EQ(s.result[i]->worker_group(), "g0");
      EXPECT_EQ(s.tokens[i], Reference(**decoder, i, kTokens)) << "stream " << i;
    } else {
      ++failed;
      EXPECT_EQ(s.result[i].status().code(), absl::StatusCode::kUnavailable)
          << s.result[i].status();
      EXPECT_THAT(std::string(s.result[i].status().message()), HasSubstr("worker g1/0"));
      // What it had streamed before the failure is the start of the right answer.
      ASSERT_LT(s.tokens[i].size(), static_cast<size_t>(kTokens));
      EXPECT_EQ(s.tokens[i], Reference(**decoder, i, s.tokens[i].size())) << i;
    }
  }
  EXPECT_GT(failed, 0) << "no stream was on the killed worker";
  EXPECT_GT(finished, 0);
  std::cerr << finished << " streams finished on g0, " << failed
            << " failed with UNAVAILABLE after g1/0 was killed\n";

  // The front end reports the group and keeps serving on the other.
  gv1::HealthResponse h = FrontEndHealth(address);
  EXPECT_EQ(h.status(), gv1::HealthResponse::STATUS_SERVING);
  EXPECT_THAT(h.message(), HasSubstr("worker group g1 is unhealthy"));
  EXPECT_EQ(ScrapeMetric(launch.metrics_port(), "apr_unhealthy_worker_groups"), 1);
  ConcurrentStreams after(4);
  after.Start(
      address, [&](int i) { return Request(20 + i, 16); }, 60);
  after.Join();
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(after.result[i].ok()) << after.result[i].status();
    EXPECT_EQ(after.result[i]->worker_group(), "g0");
    EXPECT_EQ(after.tokens[i], Reference(**decoder, 20 + i, 16));
  }
  EXPECT_LT(absl::Now() - killed, absl::Seconds(90));
  EXPECT_THAT(launch.Log(), HasSubstr("worker g1/0 was killed by signal 9"));
}

TEST(FaultTest, CancelledAndTimedOutStreamsFreeTheirSequencesAtOnce) {
  Launch launch("cancel", LocalConfig(1, 8));
  const int port = launch.WaitReady(absl::Seconds(90));
  ASSERT_GT(port, 0) << launch.Log();
  const std::string address = absl::StrCat("127.0.0.1:", port);
  // The worker's address, from the front end.
  auto fe = ConnectGeneration(address);
  gv1::ModelInfo info;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(fe->GetModelInfo(&ctx, gv1::GetModelInfoRequest(), &info).ok());
  }
  auto worker = wv1::Worker::NewStub(
      grpc::CreateChannel(info.worker_groups(0).addresses(0), grpc::InsecureChannelCredentials()));
  auto live = [&]() -> int64_t {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    wv1::HealthResponse h;
    return worker->Health(&ctx, wv1::HealthRequest(), &h).ok() ? h.sequences() : -1;
  };

  // Three streams cancelled by the client, three with a 1.5 s deadline; all ask for far
  // more tokens than they will get.
  ConcurrentStreams cancelled(3), timed_out(3);
  cancelled.Start(
      address, [](int i) { return Request(i, 3000); }, 120);
  timed_out.Start(
      address, [](int i) { return Request(10 + i, 3000); }, 1.5);
  ASSERT_TRUE(cancelled.AwaitStarted(3, absl::Seconds(30)));
  ASSERT_TRUE(timed_out.AwaitStarted(3, absl::Seconds(30)));
  EXPECT_EQ(live(), 6);
  // Polls until the worker holds at most `n` sequences; how long that took from `since`.
  auto freed = [&](int64_t n, absl::Time since) {
    while (absl::Now() - since < absl::Seconds(10)) {
      const int64_t l = live();
      if (l >= 0 && l <= n) return absl::Now() - since;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return absl::InfiniteDuration();
  };
  const absl::Time t0 = absl::Now();
  for (int i = 0; i < 3; ++i) cancelled.Cancel(i);
  const absl::Duration cancel_freed = freed(3, t0);
  cancelled.Join();
  timed_out.Join();
  absl::Time last_deadline = absl::InfinitePast();
  for (absl::Time t : timed_out.ended_at) last_deadline = std::max(last_deadline, t);
  const absl::Duration deadline_freed = freed(0, last_deadline);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(cancelled.result[i].status().code(), absl::StatusCode::kCancelled);
    EXPECT_EQ(timed_out.result[i].status().code(), absl::StatusCode::kDeadlineExceeded);
    EXPECT_LT(timed_out.tokens[i].size(), 3000u);
  }
  // Block counts back to zero: the worker's live sequences (their KV caches).
  EXPECT_EQ(live(), 0);
  std::cerr << "cancelled: 3 sequences freed " << absl::FormatDuration(cancel_freed)
            << " after TryCancel; deadline: the last 3 freed "
            << absl::FormatDuration(deadline_freed) << " after the last deadline passed\n";
  EXPECT_LT(cancel_freed, absl::Seconds(2));
  EXPECT_LT(deadline_freed, absl::Seconds(2));
  gv1::HealthResponse h = FrontEndHealth(address);
  EXPECT_EQ(h.running_sequences(), 0);
  EXPECT_EQ(h.queue_depth(), 0);
}

}  // namespace
}  // namespace apr::reliability
