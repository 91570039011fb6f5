// Every kv_cache field of a cluster config reaches the worker's DecoderOptions through
// the LoadModel request.
#include "cluster/kv_cache_request.h"

#include "gtest/gtest.h"

namespace apr::cluster {
namespace {

constexpr char kConfig[] = R"(
model { path: "models/apr-tiny" }
frontend { grpc { host: "127.0.0.1" port: 0 } }
worker_groups { name: "g0" ranks { device: "cuda:0" grpc { host: "127.0.0.1" port: 0 } } }
)";
// Group g0 with two storage nodes (remote placement).
constexpr char kRemoteConfig[] = R"(
model { path: "models/apr-tiny" }
frontend { grpc { host: "127.0.0.1" port: 0 } }
worker_groups { name: "g0" storage_nodes: "kv0" storage_nodes: "kv1"
  ranks { device: "cuda:0" grpc { host: "127.0.0.1" port: 0 } } }
storage_nodes { name: "kv0" grpc { host: "127.0.0.1" port: 0 } }
storage_nodes { name: "kv1" grpc { host: "127.0.0.1" port: 0 } }
)";

DecoderOptions Through(const std::string& kv_cache, const char* base = kConfig) {
  auto config = ParseConfig(std::string(base) + kv_cache, "test.textproto");
  EXPECT_TRUE(config.ok()) << config.status();
  DecoderOptions options;
  if (config.ok()) ApplyKvCacheRequest(WorkerKvCache(*config), &options);
  return options;
}

TEST(KvCacheRequest, SelectionAndDenseLayersReachTheDecoderOptions) {
  const DecoderOptions host = Through(
      "kv_cache { placement: PLACEMENT_HOST budget_tokens: 2048 "
      "selection: SELECTION_PREDICTOR_HYBRID dense_layers: 2 }");
  EXPECT_EQ(host.placement, KvPlacement::kHost);
  EXPECT_EQ(host.budget_tokens, 2048);
  EXPECT_TRUE(host.hybrid);
  EXPECT_EQ(host.dense_layers, 2);

  const DecoderOptions plain = Through("kv_cache { placement: PLACEMENT_AUTO }");
  EXPECT_EQ(plain.placement, KvPlacement::kAuto);
  EXPECT_FALSE(plain.hybrid);
  EXPECT_EQ(plain.dense_layers, 0);
  EXPECT_EQ(plain.budget_tokens, 1024);  // the config's default

  const DecoderOptions remote =
      Through("kv_cache { placement: PLACEMENT_REMOTE replication: 2 dense_layers: 1 }",
              kRemoteConfig);
  EXPECT_EQ(remote.placement, KvPlacement::kRemote);
  EXPECT_EQ(remote.storage_replication, 2);
  EXPECT_EQ(remote.dense_layers, 1);
  EXPECT_TRUE(remote.storage_nodes.empty()) << "the front end adds each group's nodes";
  EXPECT_EQ(Through("").placement, KvPlacement::kDevice);
}

}  // namespace
}  // namespace apr::cluster
