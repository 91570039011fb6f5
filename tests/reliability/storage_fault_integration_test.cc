// The storage tier under faults (docs/RELIABILITY.md): a launched cluster whose CPU worker
// keeps every sequence's KV blocks in a storage node (a separate process on 127.0.0.1,
// UCX over TCP), started and killed by this test.
// - Cancelled and timed-out streams free their blocks in the node at once (Stats RPC).
// - The node killed mid-generation and restarted at the same address: every in-flight
//   stream finishes with exactly the uninterrupted run's tokens (the worker rebuilds
//   each sequence from its token history on the new node).
// - The node killed and not restarted: the in-flight streams fail with UNAVAILABLE naming
//   the node within the worker's reconnect timeout; nothing hangs; once the node is back,
//   new requests are served.
// - The node restarted between requests: the worker connects to the new incarnation.
// - Two workers share the node (their sequence ids kept apart) and both recover.
#include <signal.h>

#include <random>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "backends/cpu/cpu_decoder.h"
#include "cluster/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvstore/testing/storage_node_process.h"
#include "rpc/kvstore/v1/kvstore.grpc.pb.h"
#include "rpc/worker/v1/worker.grpc.pb.h"
#include "runtime/generation.h"
#include "tests/reliability/concurrent_streams.h"
#include "tests/reliability/harness.h"

namespace apr::reliability {
namespace {

namespace gv1 = ::apr::generation::v1;
namespace wv1 = ::apr::worker::v1;
namespace kv1 = ::apr::kvstore::v1;
using cluster::ConnectGeneration;
using cluster::StreamGenerate;
using kvstore::testing::StorageNodeBinary;
using kvstore::testing::StorageNodeProcess;
using ::testing::HasSubstr;

constexpr double kReconnectSeconds = 4;

std::vector<int32_t> Prompt(int i) {
  std::vector<int32_t> p;
  for (int k = 0; k < 20 + 7 * i; ++k) p.push_back(2 + (61 * k + 433 * i) % 4000);
  return p;
}

SamplingParams Sampling(int i) {
  return {i % 2 == 0 ? 0.0f : 0.9f, i % 3 == 1 ? 50 : 0, 1.0f, static_cast<uint64_t>(500 + i)};
}

gv1::GenerateRequest Request(int i, int64_t max_tokens) {
  gv1::GenerateRequest r;
  const std::vector<int32_t> p = Prompt(i);
  r.mutable_token_ids()->mutable_ids()->Add(p.begin(), p.end());
  r.set_max_tokens(max_tokens);
  r.set_ignore_eos(true);
  const SamplingParams s = Sampling(i);
  r.mutable_sampling()->set_temperature(s.temperature);
  r.mutable_sampling()->set_top_k(s.top_k);
  r.mutable_sampling()->set_seed(s.seed);
  return r;
}

class StorageFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = cpu::CpuDecoder::Load("models/apr-tiny");
    ASSERT_TRUE(d.ok()) << d.status();
    decoder_ = *std::move(d);
    node_port_ = kvstore::testing::FreePortForRestarts();
    ASSERT_GT(node_port_, 0);
    StartNode();
    ASSERT_NE(node_, nullptr);
    const std::string worker_flags =
        absl::StrCat("extra_flags: \"--kv_store=127.0.0.1:", node_port_,
                     "\" extra_flags: \"--kv_reconnect_timeout_s=", kReconnectSeconds, "\"");
    std::string config = LocalConfig(Groups(), 8);
    // Every worker rank's end gets the flags: all workers keep their blocks in this node.
    const std::string anchor = "metrics_port: 0 } }";
    for (size_t at = config.find(anchor); at != std::string::npos;
         at = config.find(anchor, at + 1)) {
      config.replace(at, anchor.size(), absl::StrCat("metrics_port: 0 ", worker_flags, " } }"));
    }
    launch_ = std::make_unique<Launch>("storage-fault", config);
    const int port = launch_->WaitReady(absl::Seconds(90));
    ASSERT_GT(port, 0) << launch_->Log();
    address_ = absl::StrCat("127.0.0.1:", port);
    auto fe = ConnectGeneration(address_);
    gv1::ModelInfo info;
    grpc::ClientContext ctx;
    ASSERT_TRUE(fe->GetModelInfo(&ctx, gv1::GetModelInfoRequest(), &info).ok());
    ASSERT_EQ(info.worker_groups_size(), Groups());
    for (const auto& g : info.worker_groups()) {
      workers_.push_back(wv1::Worker::NewStub(
          grpc::CreateChannel(g.addresses(0), grpc::InsecureChannelCredentials())));
    }
  }
  virtual int Groups() const { return 1; }

  void StartNode() {
    auto n = StorageNodeProcess::Start(
        StorageNodeBinary(), {"--capacity_blocks=8192", "--block_bytes=8192", "--ucx_tls=tcp",
                              "--ucx_net_devices=lo", absl::StrCat("--grpc_port=", node_port_)});
    ASSERT_TRUE(n.ok()) << n.status();
    node_ = *std::move(n);
  }
  void KillNode() {
    ASSERT_TRUE(node_->Stop(SIGKILL).ok());
    node_.reset();
  }

  kv1::StatsResponse NodeStats() {
    auto stub = kv1::KvStore::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", node_port_),
                                                          grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    kv1::StatsResponse s;
    EXPECT_TRUE(stub->Stats(&ctx, kv1::StatsRequest(), &s).ok());
    return s;
  }
  // Polls until the node holds no sequence and no block; how long that took.
  absl::Duration AwaitNodeEmpty(absl::Time since, absl::Duration timeout = absl::Seconds(10)) {
    while (absl::Now() - since < timeout) {
      const kv1::StatsResponse s = NodeStats();
      if (s.used_blocks() == 0 && s.sequences() == 0) return absl::Now() - since;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return absl::InfiniteDuration();
  }
  wv1::WorkerStats WorkerStats(int group = 0) {
    grpc::ClientContext ctx;
    wv1::WorkerStats s;
    EXPECT_TRUE(workers_[group]->GetStats(&ctx, wv1::GetStatsRequest(), &s).ok());
    return s;
  }
  wv1::HealthResponse WorkerHealth(int group) {
    grpc::ClientContext ctx;
    wv1::HealthResponse h;
    EXPECT_TRUE(workers_[group]->Health(&ctx, wv1::HealthRequest(), &h).ok());
    return h;
  }
  // Live sequences over every worker.
  int64_t WorkerLive() {
    int64_t n = 0;
    for (int g = 0; g < static_cast<int>(workers_.size()); ++g) n += WorkerHealth(g).sequences();
    return n;
  }
  std::vector<int32_t> Reference(int i, int64_t max_tokens) {
    GenerationOptions o;
    o.max_new_tokens = max_tokens;
    o.sampling = Sampling(i);
    auto seq = decoder_->NewSequence();
    auto r = Generate(*decoder_, *seq, Prompt(i), o, nullptr);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->tokens : std::vector<int32_t>{};
  }

  std::unique_ptr<cpu::CpuDecoder> decoder_;
  int node_port_ = 0;
  std::unique_ptr<StorageNodeProcess> node_;
  std::unique_ptr<Launch> launch_;
  std::string address_;
  std::vector<std::unique_ptr<wv1::Worker::Stub>> workers_;
};

TEST_F(StorageFaultTest, CancelledAndTimedOutStreamsFreeTheirBlocksInTheNode) {
  ConcurrentStreams cancelled(2), timed_out(2);
  cancelled.Start(
      address_, [](int i) { return Request(i, 3000); }, 120);
  ASSERT_TRUE(cancelled.AwaitTokens(20, absl::Seconds(30)));
  // Started second, so that their deadline cannot pass before all four are running.
  timed_out.Start(
      address_, [](int i) { return Request(2 + i, 3000); }, 5.0);
  ASSERT_TRUE(timed_out.AwaitTokens(1, absl::Seconds(4)));
  kv1::StatsResponse during = NodeStats();
  EXPECT_EQ(during.sequences(), 4);
  EXPECT_GT(during.used_blocks(), 0);
  const absl::Time t0 = absl::Now();
  for (int i = 0; i < 2; ++i) cancelled.Cancel(i);
  cancelled.Join();
  timed_out.Join();
  const absl::Time ended = absl::Now();
  const absl::Duration empty_after = AwaitNodeEmpty(ended);
  std::cerr << "node held " << during.used_blocks() << " blocks of 4 sequences; empty "
            << absl::FormatDuration(empty_after) << " after the last stream ended ("
            << absl::FormatDuration(ended - t0) << " after the cancellations)\n";
  EXPECT_LT(empty_after, absl::Seconds(2));
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(cancelled.result[i].status().code(), absl::StatusCode::kCancelled);
    EXPECT_EQ(timed_out.result[i].status().code(), absl::StatusCode::kDeadlineExceeded);
  }
  EXPECT_EQ(WorkerLive(), 0);
  const kv1::StatsResponse after = NodeStats();
  EXPECT_EQ(after.blocks_allocated_total(), after.blocks_freed_total());
}

TEST_F(StorageFaultTest, NodeRestartedMidGenerationStreamsFinishWithTheSameTokens) {
  constexpr int kStreams = 6;
  constexpr int64_t kTokens = 96;
  ConcurrentStreams s(kStreams);
  s.Start(
      address_, [](int i) { return Request(i, kTokens); }, 120);
  ASSERT_TRUE(s.AwaitTokens(10, absl::Seconds(60)));
  const absl::Time killed = absl::Now();
  KillNode();
  absl::SleepFor(absl::Milliseconds(300));
  StartNode();
  s.Join();
  const absl::Duration took = absl::Now() - killed;
  for (int i = 0; i < kStreams; ++i) {
    ASSERT_TRUE(s.result[i].ok()) << "stream " << i << ": " << s.result[i].status();
    EXPECT_LT(s.tokens[i].size(), static_cast<size_t>(kTokens) + 1);
    EXPECT_EQ(s.tokens[i], Reference(i, kTokens)) << "stream " << i;
  }
  const wv1::WorkerStats ws = WorkerStats();
  EXPECT_GT(ws.rebuilt_sequences(), 0);
  std::cerr << ws.rebuilt_sequences() << " sequences rebuilt on the restarted node; "
            << "streams done " << absl::FormatDuration(took) << " after the kill\n";
  EXPECT_LT(AwaitNodeEmpty(absl::Now()), absl::Seconds(2));
  EXPECT_EQ(WorkerLive(), 0);
}

TEST_F(StorageFaultTest, NodeGoneStreamsFailCleanlyAndServingResumesWhenItReturns) {
  constexpr int kStreams = 4;
  ConcurrentStreams s(kStreams);
  s.Start(
      address_, [](int i) { return Request(10 + i, 400); }, 120);
  ASSERT_TRUE(s.AwaitTokens(5, absl::Seconds(60)));
  const absl::Time killed = absl::Now();
  KillNode();
  s.Join();
  const absl::Duration took = absl::Now() - killed;
  std::cerr << "streams failed " << absl::FormatDuration(took) << " after the kill\n";
  EXPECT_LT(took, absl::Seconds(kReconnectSeconds + 10));
  for (int i = 0; i < kStreams; ++i) {
    ASSERT_FALSE(s.result[i].ok()) << "stream " << i << " finished without its node";
    EXPECT_EQ(s.result[i].status().code(), absl::StatusCode::kUnavailable) << s.result[i].status();
    EXPECT_THAT(std::string(s.result[i].status().message()),
                HasSubstr(absl::StrCat("storage node 127.0.0.1:", node_port_)));
    // No wrong token before the failure.
    EXPECT_EQ(s.tokens[i], Reference(10 + i, s.tokens[i].size())) << "stream " << i;
  }
  EXPECT_EQ(WorkerLive(), 0);
  // The worker is alive: the front end still serves (Health), and once the node is back a
  // new request is served with the right tokens.
  StartNode();
  auto stub = ConnectGeneration(address_);
  std::vector<int32_t> got;
  auto st = StreamGenerate(
      *stub, Request(20, 24),
      [&](const gv1::TokenChunk& c) { got.insert(got.end(), c.ids().begin(), c.ids().end()); }, 60);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(got, Reference(20, 24));
  EXPECT_LT(AwaitNodeEmpty(absl::Now()), absl::Seconds(2));
}

// A node restarted at the same address while the worker is idle answers the worker's old
// control-plane channel, but the old data-plane endpoint and every block are gone: the
// worker must notice the new incarnation and connect to it.
TEST_F(StorageFaultTest, NodeRestartedBetweenRequestsIsReconnected) {
  auto stub = ConnectGeneration(address_);
  for (int round = 0; round < 2; ++round) {
    std::vector<int32_t> got;
    auto st = StreamGenerate(
        *stub, Request(30 + round, 24),
        [&](const gv1::TokenChunk& c) { got.insert(got.end(), c.ids().begin(), c.ids().end()); },
        60);
    ASSERT_TRUE(st.ok()) << "round " << round << ": " << st.status();
    EXPECT_EQ(got, Reference(30 + round, 24)) << "round " << round;
    if (round == 0) {
      KillNode();
      StartNode();
    }
  }
  EXPECT_LT(AwaitNodeEmpty(absl::Now()), absl::Seconds(2));
}

// Two worker groups keep their blocks in the one node. The front end numbers each group's
// sequences from 1, so the workers must keep their ids apart on the node; a restart
// mid-generation is recovered on both.
class SharedStorageNodeTest : public StorageFaultTest {
 protected:
  int Groups() const override { return 2; }
};

TEST_F(SharedStorageNodeTest, TwoWorkersShareTheNodeAndBothRecoverFromARestart) {
  constexpr int kStreams = 4;
  constexpr int64_t kTokens = 96;
  ConcurrentStreams s(kStreams);
  s.Start(
      address_, [](int i) { return Request(40 + i, kTokens); }, 120);
  ASSERT_TRUE(s.AwaitTokens(8, absl::Seconds(60)));
  // The front end spreads concurrent requests over the groups (least loaded, routed one at
  // a time): both workers have sequences in the node when it dies.
  for (int g = 0; g < 2; ++g) EXPECT_GT(WorkerHealth(g).sequences(), 0) << "worker g" << g;
  EXPECT_EQ(NodeStats().sequences(), kStreams);
  KillNode();
  absl::SleepFor(absl::Milliseconds(300));
  StartNode();
  s.Join();
  for (int i = 0; i < kStreams; ++i) {
    ASSERT_TRUE(s.result[i].ok()) << "stream " << i << ": " << s.result[i].status();
    EXPECT_EQ(s.tokens[i], Reference(40 + i, kTokens)) << "stream " << i;
  }
  for (int g = 0; g < 2; ++g) {
    EXPECT_GT(WorkerStats(g).rebuilt_sequences(), 0) << "worker g" << g;
  }
  EXPECT_LT(AwaitNodeEmpty(absl::Now()), absl::Seconds(2));
  EXPECT_EQ(WorkerLive(), 0);
}

}  // namespace
}  // namespace apr::reliability
