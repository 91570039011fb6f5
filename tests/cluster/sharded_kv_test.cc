// Sharded KV (issue 19 item 1, docs/KVSTORE.md "Sharding"): a CPU worker whose KV blocks
// live on two storage nodes, KV head h on node h % 2, against one whose blocks live on
// one node. Real processes on 127.0.0.1 (storage_node, worker, launcher):
//   - Worker API: the same prompts and steps on both workers give bit-identical logits
//     (the CPU decoder's decode attention reads every complete block back from the
//     tier); each shard holds half of the one node's blocks, and freeing the sequences
//     empties all three nodes.
//   - Launcher: configs/remote_kv_sharded.textproto (two nodes) and the same config with
//     one node stream the same greedy tokens, and the worker logs both shards.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "cluster/client.h"
#include "gtest/gtest.h"
#include "kvstore/testing/storage_node_process.h"
#include "rpc/worker/v1/worker.grpc.pb.h"
#include "tests/cluster/remote_kv_harness.h"

namespace apr::cluster {
namespace {

namespace fs = std::filesystem;
namespace wv1 = ::apr::worker::v1;
using kvstore::testing::StorageNodeProcess;

using testing::StartNode;
using testing::UsedBlocks;
using Worker = testing::RemoteKvWorker;

// Bitwise equality of two float vectors (NaNs included).
bool SameBits(const google::protobuf::RepeatedField<float>& a,
              const google::protobuf::RepeatedField<float>& b) {
  return a.size() == b.size() && a.size() > 0 &&
         std::memcmp(a.data(), b.data(), sizeof(float) * a.size()) == 0;
}

TEST(ShardedKvTest, TwoNodesGiveTheLogitsOfOne) {
  auto one = StartNode("kv-one");
  auto s0 = StartNode("kv-s0");
  auto s1 = StartNode("kv-s1");
  ASSERT_TRUE(one && s0 && s1);
  Worker single("w-one", {one->address()});
  Worker sharded("w-sharded", {s0->address(), s1->address()});

  // Prompts of 40, 300 and 700 tokens (2, 18 and 43 complete blocks per layer and head).
  const std::vector<int> lengths = {40, 300, 700};
  std::vector<int32_t> next;
  for (size_t i = 0; i < lengths.size(); ++i) {
    wv1::StartSequenceRequest req;
    req.set_sequence_id(i + 1);
    for (int k = 0; k < lengths[i]; ++k) req.add_prompt_ids(5 + (k * 37 + 11 * lengths[i]) % 3000);
    req.set_return_logits(true);
    wv1::StartSequenceResponse a, b;
    grpc::ClientContext ca, cb;
    ASSERT_TRUE(single.stub().StartSequence(&ca, req, &a).ok());
    ASSERT_TRUE(sharded.stub().StartSequence(&cb, req, &b).ok());
    EXPECT_TRUE(SameBits(a.logits(), b.logits())) << "prompt " << i;
    EXPECT_EQ(a.token(), b.token());
    next.push_back(a.token());
  }
  // Both shards hold blocks, half of the one node's each (apr-tiny: 2 KV heads).
  const int64_t used = UsedBlocks(*one);
  EXPECT_GT(used, 0);
  EXPECT_EQ(UsedBlocks(*s0), used / 2);
  EXPECT_EQ(UsedBlocks(*s1), used / 2);

  // 40 greedy steps of the batch; the single-node worker's tokens drive both.
  for (int step = 0; step < 40; ++step) {
    wv1::StepRequest req;
    for (size_t i = 0; i < lengths.size(); ++i) {
      req.add_sequence_ids(i + 1);
      req.add_tokens(next[i]);
    }
    req.set_return_logits(true);
    wv1::StepResponse a, b;
    grpc::ClientContext ca, cb;
    ASSERT_TRUE(single.stub().Step(&ca, req, &a).ok());
    grpc::Status sb = sharded.stub().Step(&cb, req, &b);
    ASSERT_TRUE(sb.ok()) << sb.error_message();
    ASSERT_TRUE(SameBits(a.logits(), b.logits())) << "step " << step;
    for (size_t i = 0; i < lengths.size(); ++i) {
      EXPECT_EQ(a.tokens(i), b.tokens(i));
      next[i] = a.tokens(i);
    }
  }
  EXPECT_EQ(UsedBlocks(*s0) + UsedBlocks(*s1), UsedBlocks(*one));
  // The same blocks were read: from one node, or half from each of two (the worker's
  // apr_fetch_bytes_total, the sum of its per-node counts).
  EXPECT_GT(single.FetchBytes(), 0);
  EXPECT_EQ(sharded.FetchBytes(), single.FetchBytes());

  wv1::FreeSequencesRequest fr;
  for (size_t i = 0; i < lengths.size(); ++i) fr.add_sequence_ids(i + 1);
  wv1::FreeSequencesResponse fa, fb;
  grpc::ClientContext ca, cb;
  ASSERT_TRUE(single.stub().FreeSequences(&ca, fr, &fa).ok());
  ASSERT_TRUE(sharded.stub().FreeSequences(&cb, fr, &fb).ok());
  EXPECT_EQ(UsedBlocks(*one), 0);
  EXPECT_EQ(UsedBlocks(*s0), 0);
  EXPECT_EQ(UsedBlocks(*s1), 0);
}

// Greedy tokens of three concurrent streams through a launched config.
std::vector<std::vector<int32_t>> Stream(const std::string& name, const std::string& config) {
  testing::LaunchedStreams r = testing::StreamThreeGreedy(name, config);
  if (name == "sharded") EXPECT_NE(r.log.find("KV shard 1 of 2"), std::string::npos) << r.log;
  return r.tokens;
}

TEST(ShardedKvTest, TheShardedConfigStreamsTheTokensOfOneNode) {
  std::string sharded = testing::ReadFile("configs/remote_kv_sharded.textproto");
  ASSERT_FALSE(sharded.empty());
  sharded = absl::StrReplaceAll(
      sharded, {{"\"models/apr-tiny\"", "\"" + fs::absolute("models/apr-tiny").string() + "\""}});
  // The same config with one node: g0 names kv0 only and kv1 is gone.
  std::string one = absl::StrReplaceAll(sharded, {{"  storage_nodes: \"kv1\"\n", ""}});
  const size_t second = one.find("storage_nodes {\n  name: \"kv1\"");
  ASSERT_NE(second, std::string::npos);
  one.erase(second, one.find("\n}\n", second) + 3 - second);
  const auto a = Stream("one-node", one);
  const auto b = Stream("sharded", sharded);
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(a[i].size(), 32u);
    EXPECT_EQ(a[i], b[i]) << "stream " << i;
  }
}

}  // namespace
}  // namespace apr::cluster
