#include "cluster/config.h"

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace apr::cluster {
namespace {

using ::testing::HasSubstr;

constexpr char kMinimal[] = R"(
model { path: "models/apr-tiny" }
frontend { grpc { host: "127.0.0.1" port: 0 } }
worker_groups {
  name: "g0"
  ranks { device: "cpu" grpc { host: "127.0.0.1" port: 0 } }
}
)";

std::string Error(const std::string& text) {
  auto c = ParseConfig(text, "x.textproto");
  EXPECT_FALSE(c.ok());
  return std::string(c.status().message());
}

// Every file in configs/ (the runfiles' copy of the folder's filegroup), so a new config
// is checked without being listed here.
TEST(ConfigTest, EveryCheckedInConfigIsValid) {
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator("configs")) {
    if (entry.path().extension() != ".textproto") continue;
    auto c = LoadConfig(entry.path().string());
    EXPECT_TRUE(c.ok()) << entry.path() << ": " << c.status();
    ++checked;
  }
  EXPECT_GE(checked, 9);  // the folder held nine on 2026-12-06
  auto k8s = LoadConfig("deploy/cluster.textproto");  // the Kubernetes ConfigMap's
  EXPECT_TRUE(k8s.ok()) << k8s.status();
}

TEST(ConfigTest, MinimalConfigGetsDefaults) {
  auto c = ParseConfig(kMinimal, "x");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->scheduler().max_batch_size(), 8);
  EXPECT_EQ(c->scheduler().max_queue_size(), 1024);
  EXPECT_EQ(c->scheduler().prefill_chunk_tokens(), 2048);
  EXPECT_EQ(c->scheduler().max_prefill_share(), 0.25);
  EXPECT_EQ(c->frontend().default_max_tokens(), 128);
  EXPECT_EQ(c->launcher().stop_timeout_seconds(), 10);
  // The printed form parses back to the same config.
  auto again = ParseConfig(ConfigToText(*c), "printed");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->DebugString(), c->DebugString());
}

TEST(ConfigTest, ChunkedAdmissionSettingsAreChecked) {
  const std::string base = std::string(kMinimal) + "\nscheduler { ";
  EXPECT_THAT(Error(base + "prefill_chunk_tokens: -2 }"),
              HasSubstr("scheduler.prefill_chunk_tokens: must be >= -1"));
  EXPECT_THAT(Error(base + "max_prefill_share: 1.5 }"),
              HasSubstr("scheduler.max_prefill_share: must be in (0, 1]"));
  auto whole = ParseConfig(base + "prefill_chunk_tokens: -1 max_prefill_share: 1 }", "x");
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->scheduler().prefill_chunk_tokens(), -1);
}

TEST(ConfigTest, SyntaxErrorNamesLineAndColumn) {
  EXPECT_EQ(Error("model { path: \"m\" }\nfrontend {\n  grpc { hots: \"x\" }\n}\n"),
            "x.textproto:3:14: Message type \"apr.cluster.v1.Endpoint\" has no field named "
            "\"hots\".");
  EXPECT_THAT(Error("model { path: \"m\" \n"), HasSubstr("x.textproto:2:1:"));
  EXPECT_THAT(Error("frontend { metrics_port: \"many\" }"), HasSubstr("x.textproto:1:26:"));
}

TEST(ConfigTest, SemanticErrorsNameTheFieldsLine) {
  const std::string text = std::string(kMinimal) + R"(worker_groups {
  name: "g1"
  ranks { device: "gpu0" grpc { host: "127.0.0.1" port: 70000 } }
}
)";
  const std::string e = Error(text);
  EXPECT_THAT(e, HasSubstr("x.textproto:10:11: worker_groups[1].ranks[0].device: \"gpu0\" is "
                           "not cpu, auto or cuda:N"));
  EXPECT_THAT(e, HasSubstr("x.textproto:10:51: worker_groups[1].ranks[0].grpc.port: 70000 is "
                           "not a TCP port"));
}

TEST(ConfigTest, MissingPartsAreNamed) {
  EXPECT_THAT(Error(""), HasSubstr("model: needs a path"));
  EXPECT_THAT(Error(""), HasSubstr("frontend: is missing"));
  EXPECT_THAT(Error(""), HasSubstr("worker_groups: needs at least one group"));
  EXPECT_THAT(Error("model { path: \"m\" }\nfrontend { grpc { port: 1 } }"),
              HasSubstr("x.textproto:2:12: frontend.grpc.host: is empty"));
}

TEST(ConfigTest, DuplicatesAreRejected) {
  const std::string text = R"(model { path: "m" }
frontend { grpc { host: "127.0.0.1" port: 5000 } metrics_port: 5001 }
worker_groups {
  name: "g0"
  ranks { device: "cpu" grpc { host: "127.0.0.1" port: 5000 } metrics_port: 5001 }
}
worker_groups {
  name: "g0"
  ranks { device: "cpu" grpc { host: "127.0.0.1" port: 5002 } }
}
)";
  const std::string e = Error(text);
  EXPECT_THAT(e, HasSubstr("x.textproto:5:50: worker g0/0 gRPC port 127.0.0.1:5000 is already "
                           "the frontend gRPC port (line 2)"));
  EXPECT_THAT(e, HasSubstr("x.textproto:5:63: worker g0/0 metrics port 127.0.0.1:5001"));
  EXPECT_THAT(e, HasSubstr("x.textproto:8:3: worker_groups[1].name: \"g0\" is already"));
}

TEST(ConfigTest, TensorParallelNeedsDistinctGpus) {
  const std::string text = R"(model { path: "m" }
frontend { grpc { host: "127.0.0.1" } }
worker_groups {
  name: "tp"
  ranks { device: "cuda:0" grpc { host: "127.0.0.1" } }
  ranks { device: "cuda:0" grpc { host: "127.0.0.1" } }
  ranks { device: "cpu" grpc { host: "127.0.0.1" } }
}
)";
  const std::string e = Error(text);
  EXPECT_THAT(e, HasSubstr("x.textproto:6:11: worker_groups[0].ranks[1].device: cuda:0 is "
                           "already rank 0's GPU"));
  EXPECT_THAT(e, HasSubstr("x.textproto:7:11: worker_groups[0].ranks[2].device: tensor "
                           "parallelism needs one GPU per rank"));
}

TEST(ConfigTest, StorageNodesGoWithRemotePlacement) {
  EXPECT_THAT(Error(std::string(kMinimal) + "kv_cache { placement: PLACEMENT_REMOTE }"),
              HasSubstr("kv_cache.placement: PLACEMENT_REMOTE needs storage_nodes"));
  EXPECT_THAT(Error(std::string(kMinimal) + "storage_nodes { name: \"kv0\" grpc { host: \"h\" } }"),
              HasSubstr("x.textproto:8:1: storage_nodes: storage nodes are used only with"));
  EXPECT_THAT(Error(std::string(kMinimal) + "launcher { binaries { key: \"gpu\" value: \"x\" } }"),
              HasSubstr("unknown process kind \"gpu\""));
}

TEST(ConfigTest, StorageSecurityIsMutualOnBothSides) {
  const std::string remote = std::string(kMinimal) +
                             "kv_cache { placement: PLACEMENT_REMOTE }\n"
                             "storage_nodes { name: \"kv0\" grpc { host: \"127.0.0.1\" } }\n";
  const std::string both =
      "storage_security { node_tls { cert_file: \"n.pem\" key_file: \"n.key\" ca_file: "
      "\"ca.pem\" } worker_tls { cert_file: \"w.pem\" key_file: \"w.key\" ca_file: "
      "\"ca.pem\" } auth_token_file: \"token\" }\n";
  EXPECT_TRUE(ParseConfig(remote + both, "x.textproto").ok());
  EXPECT_TRUE(
      ParseConfig(remote + "storage_security { auth_token_file: \"t\" }", "x.textproto").ok());
  EXPECT_THAT(Error(remote + "storage_security { node_tls { cert_file: \"n.pem\" key_file: "
                             "\"n.key\" ca_file: \"ca.pem\" } }"),
              HasSubstr("storage_security.worker_tls: the nodes serve mutual TLS only"));
  EXPECT_THAT(Error(remote + "storage_security { node_tls { cert_file: \"n.pem\" key_file: "
                             "\"n.key\" } worker_tls { cert_file: \"w.pem\" key_file: "
                             "\"w.key\" ca_file: \"ca.pem\" } }"),
              HasSubstr("node_tls.cert_file: mutual TLS needs cert_file, key_file and ca_file"));
  EXPECT_THAT(Error(std::string(kMinimal) + both),
              HasSubstr("storage_security: is set but the config names no storage_nodes"));
}

TEST(ConfigTest, OneStorageNodePerWorkerGroup) {
  const std::string remote = std::string(kMinimal) +
                             "kv_cache { placement: PLACEMENT_REMOTE }\n"
                             "storage_nodes { name: \"kv0\" grpc { host: \"127.0.0.1\" } }\n";
  EXPECT_TRUE(ParseConfig(remote, "x.textproto").ok());
  // Two nodes for one group: the second would idle.
  EXPECT_THAT(Error(remote + "storage_nodes { name: \"kv1\" grpc { host: \"127.0.0.1\" } }"),
              HasSubstr("storage_nodes: worker group i keeps its KV cache on storage node i: 1 "
                        "worker group(s) need 1 storage node(s), the config has 2"));
  // Two groups for one node.
  EXPECT_THAT(Error(remote + "worker_groups { name: \"g1\" ranks { device: \"cpu\" "
                             "grpc { host: \"127.0.0.1\" port: 0 } } }"),
              HasSubstr("2 worker group(s) need 2 storage node(s), the config has 1"));
}

// Sharding (docs/KVSTORE.md): a group names its nodes; every node belongs to one group.
TEST(ConfigTest, GroupsNameTheNodesTheyShardOver) {
  const std::string two_nodes = std::string(kMinimal) +
                                "kv_cache { placement: PLACEMENT_REMOTE }\n"
                                "storage_nodes { name: \"kv0\" grpc { host: \"127.0.0.1\" } }\n"
                                "storage_nodes { name: \"kv1\" grpc { host: \"127.0.0.1\" } }\n";
  const std::string g1 =
      "worker_groups { name: \"g1\" ranks { device: \"cpu\" grpc { host: \"127.0.0.1\" } } ";
  auto c = ParseConfig(two_nodes +
                           "worker_groups { name: \"g1\" storage_nodes: \"kv1\" "
                           "storage_nodes: \"kv0\" ranks { device: \"cpu\" grpc { "
                           "host: \"127.0.0.1\" port: 7 } } }",
                       "x.textproto");
  // g0 names none while g1 does.
  EXPECT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("worker_groups[0].storage_nodes: is empty, but other worker groups"));
  // One group over both nodes.
  std::string one = two_nodes;
  one.replace(one.find("name: \"g0\""), 11,
              "name: \"g0\" storage_nodes: \"kv0\" storage_nodes: \"kv1\"");
  auto ok = ParseConfig(one, "x.textproto");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(GroupStorageNodes(*ok, 0), (std::vector<std::string>{"127.0.0.1:0", "127.0.0.1:0"}));
  // A name that is no node; a node in two groups; a node in none.
  std::string bad = two_nodes;
  bad.replace(bad.find("name: \"g0\""), 11, "name: \"g0\" storage_nodes: \"kv9\"");
  EXPECT_THAT(
      Error(bad),
      HasSubstr("worker_groups[0].storage_nodes: \"kv9\" is not the name of a storage node"));
  EXPECT_THAT(Error(bad),
              HasSubstr("storage_nodes[0].name: \"kv0\" is in no worker group's storage_nodes"));
  std::string twice = two_nodes;
  twice.replace(twice.find("name: \"g0\""), 11,
                "name: \"g0\" storage_nodes: \"kv0\" storage_nodes: \"kv1\"");
  EXPECT_THAT(Error(twice + g1 + "storage_nodes: \"kv1\" }"),
              HasSubstr("\"kv1\" is already a node of worker_groups[0] (g0)"));
  // Without names the old rule holds: group i, node i.
  auto plain = ParseConfig(two_nodes + g1 + "}", "x.textproto");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(GroupStorageNodes(*plain, 1), (std::vector<std::string>{"127.0.0.1:0"}));
}

// Replication (docs/KVSTORE.md): two copies over the halves of each group's nodes.
TEST(ConfigTest, ReplicationNeedsRemotePlacementAndAnEvenNodeCount) {
  const std::string two_nodes = std::string(kMinimal) +
                                "storage_nodes { name: \"kv0\" grpc { host: \"127.0.0.1\" } }\n"
                                "storage_nodes { name: \"kv1\" grpc { host: \"127.0.0.1\" } }\n";
  std::string named = two_nodes;
  named.replace(named.find("name: \"g0\""), 11,
                "name: \"g0\" storage_nodes: \"kv0\" storage_nodes: \"kv1\"");
  auto ok = ParseConfig(named + "kv_cache { placement: PLACEMENT_REMOTE replication: 2 }",
                        "x.textproto");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->kv_cache().replication(), 2);
  EXPECT_TRUE(ParseConfig(named + "kv_cache { placement: PLACEMENT_REMOTE replication: 1 }",
                          "x.textproto")
                  .ok());
  // Not remote; out of range; one node for the group (unnamed: group 0 -> node 0).
  EXPECT_THAT(Error(std::string(kMinimal) + "kv_cache {\n  replication: 2\n}"),
              HasSubstr("x.textproto:9:3: kv_cache.replication: 2 needs placement "
                        "PLACEMENT_REMOTE"));
  EXPECT_THAT(Error(named + "kv_cache { placement: PLACEMENT_REMOTE replication: 3 }"),
              HasSubstr("kv_cache.replication: must be 0 or 1 (one copy) or 2 (two copies), "
                        "not 3"));
  const std::string one_node = std::string(kMinimal) +
                               "storage_nodes { name: \"kv0\" grpc { host: \"127.0.0.1\" } }\n";
  EXPECT_THAT(Error(one_node + "kv_cache { placement: PLACEMENT_REMOTE replication: 2 }"),
              HasSubstr("so a group needs an even number of them: worker_groups[0] (g0) has 1"));
}

// predictor-hybrid picks blocks by the step's query, which a storage node cannot serve
// in time; dense_layers is a count.
TEST(ConfigTest, SelectionAndDenseLayersAreChecked) {
  auto ok = ParseConfig(std::string(kMinimal) +
                            "kv_cache { selection: SELECTION_PREDICTOR_HYBRID dense_layers: 2 }",
                        "x.textproto");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->kv_cache().dense_layers(), 2);
  const std::string one_node = std::string(kMinimal) +
                               "storage_nodes { name: \"kv0\" grpc { host: \"127.0.0.1\" } }\n";
  EXPECT_THAT(Error(one_node + "kv_cache {\n  placement: PLACEMENT_REMOTE\n  selection: "
                               "SELECTION_PREDICTOR_HYBRID\n}"),
              HasSubstr("kv_cache.selection: SELECTION_PREDICTOR_HYBRID needs the KV cache on "
                        "the GPU or in host RAM"));
  EXPECT_THAT(Error(std::string(kMinimal) + "kv_cache { dense_layers: -1 }"),
              HasSubstr("kv_cache.dense_layers: must be >= 0"));
}

TEST(ConfigTest, HostHelpers) {
  EXPECT_TRUE(IsLoopback("127.0.0.1"));
  EXPECT_TRUE(IsLoopback("localhost"));
  EXPECT_TRUE(IsLoopback("::1"));
  EXPECT_FALSE(IsLoopback("10.0.0.1"));
  EXPECT_FALSE(IsLoopback("apr-worker-0.apr-worker"));
  EXPECT_EQ(HostPort("::1", 5), "[::1]:5");
  EXPECT_EQ(HostPort("127.0.0.1", 5), "127.0.0.1:5");
  EXPECT_TRUE(IsValidDevice("cuda:12"));
  EXPECT_FALSE(IsValidDevice("cuda:"));
  EXPECT_FALSE(IsValidDevice("cuda:x"));
}

}  // namespace
}  // namespace apr::cluster
