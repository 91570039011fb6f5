// Replicated KV (issue 19 item 2, docs/KVSTORE.md "Replication"): a CPU worker whose KV
// blocks live twice, on two storage nodes (kv_cache.replication 2), loses one node to
// SIGKILL mid-generation. Real processes on 127.0.0.1 (storage_node, worker):
//   - either node, the primary (read from) or the secondary: every sequence goes on with
//     prefill and decode logits bit-identical to an uninterrupted run of the same worker
//     config, and the worker rebuilt nothing (WorkerStats.rebuilt_sequences 0: no
//     re-prefill); a sequence started after the loss is served from the survivor, and
//     freeing empties it;
//   - a node killed while the worker is idle: the next sequence drops its copy and both the
//     old and the new sequence are served from the survivor;
//   - the survivor killed too: the next step fails with UNAVAILABLE naming both nodes;
//   - re-replication: the lost node restarted at its address gets a copy of every block
//     at the next new sequence, and the other node can then be killed: the streams still
//     go on bit-identical with nothing rebuilt;
//   - configs/remote_kv_replicated.textproto through the launcher streams the greedy tokens
//     of the same config with one node and one copy.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "cluster/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvstore/testing/storage_node_process.h"
#include "rpc/worker/v1/worker.grpc.pb.h"
#include "tests/cluster/remote_kv_harness.h"

namespace apr::cluster {
namespace {

namespace fs = std::filesystem;
namespace wv1 = ::apr::worker::v1;
using kvstore::testing::StorageNodeProcess;
using ::testing::HasSubstr;

using testing::StartNode;
using testing::UsedBlocks;

// A CPU worker process whose KV blocks live twice, on nodes[0] and nodes[1]; a node that
// stops answering is given up after 1 s.
class Worker : public testing::RemoteKvWorker {
 public:
  Worker(const std::string& name, const std::vector<std::string>& nodes)
      : RemoteKvWorker(name, nodes, /*replication=*/2, {"--kv_reconnect_timeout_s=1"}) {}
};

// What a run produced: every prefill's and step's logits, and the tokens.
struct Outputs {
  std::vector<std::vector<float>> logits;
  std::vector<int32_t> tokens;
};

constexpr int kSteps = 40;
constexpr int kKillAtStep = 15;
const std::vector<int> kLengths = {40, 300, 700};  // 2, 18 and 43 blocks per layer and head

wv1::StartSequenceRequest Prompt(uint64_t id, int length) {
  wv1::StartSequenceRequest req;
  req.set_sequence_id(id);
  for (int k = 0; k < length; ++k) req.add_prompt_ids(5 + (k * 37 + 11 * length) % 3000);
  req.set_return_logits(true);
  return req;
}

// Three prompts and kSteps batched greedy steps; before step kKillAtStep, `at_kill` runs
// (kills a node). Fails the test on any error.
Outputs Generate(Worker& w, const std::function<void()>& at_kill) {
  Outputs run;
  std::vector<int32_t> next;
  for (size_t i = 0; i < kLengths.size(); ++i) {
    wv1::StartSequenceResponse resp;
    grpc::ClientContext ctx;
    grpc::Status s = w.stub().StartSequence(&ctx, Prompt(i + 1, kLengths[i]), &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (!s.ok()) return run;
    run.logits.emplace_back(resp.logits().begin(), resp.logits().end());
    run.tokens.push_back(resp.token());
    next.push_back(resp.token());
  }
  for (int step = 0; step < kSteps; ++step) {
    if (step == kKillAtStep && at_kill) at_kill();
    wv1::StepRequest req;
    for (size_t i = 0; i < kLengths.size(); ++i) {
      req.add_sequence_ids(i + 1);
      req.add_tokens(next[i]);
    }
    req.set_return_logits(true);
    wv1::StepResponse resp;
    grpc::ClientContext ctx;
    grpc::Status s = w.stub().Step(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << "step " << step << ": " << s.error_message();
    if (!s.ok()) return run;
    run.logits.emplace_back(resp.logits().begin(), resp.logits().end());
    for (size_t i = 0; i < kLengths.size(); ++i) {
      next[i] = resp.tokens(i);
      run.tokens.push_back(resp.tokens(i));
    }
  }
  return run;
}

// Bitwise equality (NaNs included).
bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && !a.empty() &&
         std::memcmp(a.data(), b.data(), sizeof(float) * a.size()) == 0;
}

void ExpectSameRun(const Outputs& want, const Outputs& got) {
  EXPECT_EQ(got.tokens, want.tokens);
  ASSERT_EQ(got.logits.size(), want.logits.size());
  for (size_t i = 0; i < want.logits.size(); ++i) {
    EXPECT_TRUE(SameBits(want.logits[i], got.logits[i])) << "call " << i;
  }
}

class LoseNode : public ::testing::TestWithParam<int> {};

// The uninterrupted run over two fresh nodes, which every loss is held to: both nodes
// hold every block and nothing is rebuilt. Empty (with a failure) when it cannot run.
Outputs ReferenceRun(const std::string& name) {
  auto a = StartNode("kv-" + name + "-a");
  auto b = StartNode("kv-" + name + "-b");
  EXPECT_TRUE(a && b);
  if (!a || !b) return {};
  Worker w("w-" + name, {a->address(), b->address()});
  EXPECT_TRUE(w.ok());
  if (!w.ok()) return {};
  Outputs want = Generate(w, nullptr);
  EXPECT_EQ(UsedBlocks(*a), UsedBlocks(*b));  // two copies of every block
  EXPECT_GT(UsedBlocks(*a), 0);
  EXPECT_EQ(w.Rebuilt(), 0);
  return want;
}

TEST_P(LoseNode, StreamsGoOnBitIdenticalWithoutRePrefill) {
  const int victim = GetParam();  // 0: the primary, which reads go to; 1: the secondary
  const Outputs want = ReferenceRun("ref");
  ASSERT_EQ(want.tokens.size(), kLengths.size() * (kSteps + 1));

  std::unique_ptr<StorageNodeProcess> nodes[2] = {StartNode("kv-a"), StartNode("kv-b")};
  ASSERT_TRUE(nodes[0] && nodes[1]);
  Worker w(absl::StrCat("w-lose-", victim), {nodes[0]->address(), nodes[1]->address()});
  ASSERT_TRUE(w.ok());
  const Outputs got = Generate(w, [&] {
    auto st = nodes[victim]->Stop(SIGKILL);
    ASSERT_TRUE(st.ok()) << st.status();
  });
  ExpectSameRun(want, got);
  EXPECT_EQ(w.Rebuilt(), 0) << "a sequence was prefilled again after the loss";

  // A sequence started after the loss is served from the survivor (as the first prompt
  // was before it), and freeing every sequence empties the survivor.
  StorageNodeProcess& survivor = *nodes[1 - victim];
  wv1::StartSequenceResponse late;
  grpc::ClientContext lc;
  grpc::Status s = w.stub().StartSequence(&lc, Prompt(9, kLengths[0]), &late);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(SameBits(want.logits[0], {late.logits().begin(), late.logits().end()}));
  EXPECT_EQ(w.Rebuilt(), 0);
  wv1::FreeSequencesRequest fr;
  for (uint64_t id : {1, 2, 3, 9}) fr.add_sequence_ids(id);
  wv1::FreeSequencesResponse fresp;
  grpc::ClientContext fc;
  ASSERT_TRUE(w.stub().FreeSequences(&fc, fr, &fresp).ok());
  EXPECT_EQ(UsedBlocks(survivor), 0);
}

INSTANTIATE_TEST_SUITE_P(EitherNode, LoseNode, ::testing::Values(0, 1));

// A node lost while the worker is idle: the next new sequence finds it gone (its Health
// check), drops its copy and goes on with the survivor, rather than reconnecting to both.
TEST(ReplicatedKvTest, ANodeLostWhileIdleIsDroppedAtTheNextSequence) {
  std::unique_ptr<StorageNodeProcess> nodes[2] = {StartNode("kv-p"), StartNode("kv-q")};
  ASSERT_TRUE(nodes[0] && nodes[1]);
  Worker w("w-idle", {nodes[0]->address(), nodes[1]->address()});
  ASSERT_TRUE(w.ok());
  wv1::StartSequenceResponse one, two;
  grpc::ClientContext c1, c2;
  ASSERT_TRUE(w.stub().StartSequence(&c1, Prompt(1, kLengths[1]), &one).ok());
  ASSERT_TRUE(nodes[0]->Stop(SIGKILL).ok());  // the primary, while nothing runs
  grpc::Status s = w.stub().StartSequence(&c2, Prompt(2, kLengths[1]), &two);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(SameBits({one.logits().begin(), one.logits().end()},
                       {two.logits().begin(), two.logits().end()}));
  // Both sequences step from the survivor: the same prompt and token, the same rows.
  wv1::StepRequest req;
  for (uint64_t id : {1, 2}) {
    req.add_sequence_ids(id);
    req.add_tokens(one.token());
  }
  req.set_return_logits(true);
  for (int step = 0; step < 5; ++step) {
    wv1::StepResponse resp;
    grpc::ClientContext c;
    s = w.stub().Step(&c, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    const size_t v = resp.logits().size() / 2;
    ASSERT_GT(v, 0u);
    EXPECT_TRUE(SameBits({resp.logits().begin(), resp.logits().begin() + v},
                         {resp.logits().begin() + v, resp.logits().end()}))
        << "step " << step;
    ASSERT_EQ(resp.tokens(0), resp.tokens(1));
    req.set_tokens(0, resp.tokens(0));
    req.set_tokens(1, resp.tokens(1));
  }
  EXPECT_EQ(w.Rebuilt(), 0);
}

// Node 0 killed mid-generation and restarted at its address: the next new sequence
// restores its copy from node 1, which is then killed too. Nothing is prefilled again and
// every logit matches the uninterrupted run.
TEST(ReplicatedKvTest, ARestartedNodeGetsItsCopyBackAndTheOtherCanThenBeLost) {
  const Outputs want = ReferenceRun("ref-restore");
  ASSERT_EQ(want.tokens.size(), kLengths.size() * (kSteps + 1));
  const int port = kvstore::testing::FreePortForRestarts();
  ASSERT_NE(port, 0);
  std::unique_ptr<StorageNodeProcess> nodes[2] = {StartNode("kv-ra", port), StartNode("kv-rb")};
  ASSERT_TRUE(nodes[0] && nodes[1]);
  Worker w("w-restore", {nodes[0]->address(), nodes[1]->address()});
  ASSERT_TRUE(w.ok());
  int64_t restored_blocks = -1;
  const Outputs got = Generate(w, [&] {
    ASSERT_TRUE(nodes[0]->Stop(SIGKILL).ok());
    nodes[0] = StartNode("kv-ra-again", port);
    ASSERT_TRUE(nodes[0] != nullptr);
    // A new sequence: the worker finds copy 0 lost, node 0 answering, and restores it.
    wv1::StartSequenceResponse late;
    grpc::ClientContext c;
    grpc::Status s = w.stub().StartSequence(&c, Prompt(9, kLengths[0]), &late);
    ASSERT_TRUE(s.ok()) << s.error_message();
    restored_blocks = UsedBlocks(*nodes[0]);
    EXPECT_EQ(restored_blocks, UsedBlocks(*nodes[1]));
    ASSERT_TRUE(nodes[1]->Stop(SIGKILL).ok());
  });
  ExpectSameRun(want, got);
  EXPECT_GT(restored_blocks, 0);
  EXPECT_EQ(w.Rebuilt(), 0) << "a sequence was prefilled again";
}

TEST(ReplicatedKvTest, LosingBothNodesFailsNamingBoth) {
  std::unique_ptr<StorageNodeProcess> nodes[2] = {StartNode("kv-x"), StartNode("kv-y")};
  ASSERT_TRUE(nodes[0] && nodes[1]);
  Worker w("w-both", {nodes[0]->address(), nodes[1]->address()});
  ASSERT_TRUE(w.ok());
  wv1::StartSequenceResponse first;
  grpc::ClientContext c0;
  ASSERT_TRUE(w.stub().StartSequence(&c0, Prompt(1, kLengths[1]), &first).ok());
  ASSERT_TRUE(nodes[0]->Stop(SIGKILL).ok());
  ASSERT_TRUE(nodes[1]->Stop(SIGKILL).ok());
  wv1::StepRequest req;
  req.add_sequence_ids(1);
  req.add_tokens(first.token());
  wv1::StepResponse resp;
  grpc::ClientContext c1;
  c1.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  grpc::Status s = w.stub().Step(&c1, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr(nodes[0]->address()));
  EXPECT_THAT(s.error_message(), HasSubstr(nodes[1]->address()));
}

// Greedy tokens of three concurrent streams through a launched config.
std::vector<std::vector<int32_t>> Stream(const std::string& name, const std::string& config) {
  testing::LaunchedStreams r = testing::StreamThreeGreedy(name, config);
  if (name == "replicated") {
    EXPECT_NE(r.log.find("KV copy 1 of 2"), std::string::npos) << r.log;
  }
  return r.tokens;
}

TEST(ReplicatedKvTest, TheReplicatedConfigStreamsTheTokensOfOneNode) {
  std::string replicated = testing::ReadFile("configs/remote_kv_replicated.textproto");
  ASSERT_FALSE(replicated.empty());
  replicated = absl::StrReplaceAll(
      replicated,
      {{"\"models/apr-tiny\"", "\"" + fs::absolute("models/apr-tiny").string() + "\""}});
  // The same config with one node and one copy: g0 names kv0 only and kv1 is gone.
  std::string one = absl::StrReplaceAll(
      replicated,
      {{"  storage_nodes: \"kv1\"  # the second half: copy 1\n", ""}, {" replication: 2", ""}});
  const size_t second = one.find("storage_nodes {\n  name: \"kv1\"");
  ASSERT_NE(second, std::string::npos);
  one.erase(second, one.find("\n}\n", second) + 3 - second);
  ASSERT_EQ(one.find("storage_nodes: \"kv1\""), std::string::npos) << one;
  ASSERT_EQ(one.find("replication: 2"), std::string::npos) << one;
  const auto a = Stream("one-node", one);
  const auto b = Stream("replicated", replicated);
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(a[i].size(), 32u);
    EXPECT_EQ(a[i], b[i]) << "stream " << i;
  }
}

}  // namespace
}  // namespace apr::cluster
