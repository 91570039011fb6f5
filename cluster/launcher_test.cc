// What the launcher starts for a config: the flags each process gets.
#include "cluster/launcher.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace apr::cluster {
namespace {

using ::testing::Contains;

constexpr char kRemote[] = R"(
model { path: "models/apr-tiny" }
frontend { grpc { host: "127.0.0.1" port: 0 } }
worker_groups { name: "g0" ranks { device: "cpu" grpc { host: "127.0.0.1" port: 0 } } }
worker_groups { name: "g1" ranks { device: "cpu" grpc { host: "127.0.0.1" port: 0 } } }
worker_groups {
  name: "g2"
  ranks {
    device: "cpu"
    grpc { host: "127.0.0.1" port: 0 }
    extra_flags: "--kv_reconnect_timeout_s=3"
  }
}
storage_nodes { name: "kv0" grpc { host: "127.0.0.1" port: 50071 } pool_bytes: 1048576 }
storage_nodes { name: "kv1" grpc { host: "127.0.0.1" port: 50072 } }
kv_cache { placement: PLACEMENT_REMOTE }
)";

std::vector<ProcessSpec> Plan(const std::string& text) {
  auto config = ParseConfig(text, "test.textproto");
  EXPECT_TRUE(config.ok()) << config.status();
  Launcher launcher(*config, {});
  auto plan = launcher.PlanProcesses("/tmp/launcher-test");
  EXPECT_TRUE(plan.ok()) << plan.status();
  return plan.ok() ? *plan : std::vector<ProcessSpec>{};
}

TEST(LauncherTest, StorageNodesGetTheirPoolSizeUnderTheFlagTheyTake) {
  const std::vector<ProcessSpec> plan = Plan(kRemote);
  ASSERT_EQ(plan.size(), 6u);  // 2 storage nodes, 3 workers, the front end
  EXPECT_EQ(plan[0].kind, "storage_node");
  EXPECT_THAT(plan[0].flags, Contains("--capacity_bytes=1048576"));
  EXPECT_THAT(plan[0].flags, Contains("--grpc_port=50071"));
  EXPECT_EQ(plan[1].kind, "storage_node");
  for (const std::string& f : plan[1].flags) EXPECT_EQ(f.find("capacity_bytes"), std::string::npos);
}

TEST(LauncherTest, RemotePlacementGivesEachWorkerAStorageNodeRoundRobin) {
  const std::vector<ProcessSpec> plan = Plan(kRemote);
  ASSERT_EQ(plan.size(), 6u);
  EXPECT_EQ(plan[2].name, "g0/0");
  EXPECT_THAT(plan[2].flags, Contains("--kv_store=127.0.0.1:50071"));
  EXPECT_THAT(plan[3].flags, Contains("--kv_store=127.0.0.1:50072"));
  EXPECT_THAT(plan[4].flags, Contains("--kv_store=127.0.0.1:50071"));
  EXPECT_THAT(plan[4].flags, Contains("--kv_reconnect_timeout_s=3"));  // the rank's extra_flags
}

TEST(LauncherTest, WorkersKeepTheirOwnKvCacheWithoutRemotePlacement) {
  const std::vector<ProcessSpec> plan = Plan(R"(
model { path: "models/apr-tiny" }
frontend { grpc { host: "127.0.0.1" port: 0 } }
worker_groups { name: "g0" ranks { device: "cpu" grpc { host: "127.0.0.1" port: 0 } } }
)");
  ASSERT_EQ(plan.size(), 2u);
  for (const std::string& f : plan[0].flags) EXPECT_EQ(f.find("--kv_store"), std::string::npos);
}

}  // namespace
}  // namespace apr::cluster
