// The launcher starts the storage nodes of configs/offload_remote.textproto (plus a second
// node, to check that each gets its own port and ready file) as real
// //kvstore:storage_node processes with port 0: each reports the port it picked in its
// ready file, answers the kvstore control API there with the block geometry of the
// config's model, and stops cleanly (exit 0) when the launcher stops it.
#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "cluster/config.h"
#include "cluster/launcher.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rpc/kvstore/v1/kvstore.grpc.pb.h"

namespace apr::cluster {
namespace {

namespace fs = std::filesystem;
namespace kv1 = ::apr::kvstore::v1;
using ::testing::Contains;
using ::testing::HasSubstr;

ClusterConfig RemoteKvWithPickedPorts() {
  auto config = LoadConfig("configs/offload_remote.textproto");
  EXPECT_TRUE(config.ok()) << config.status();
  auto& second = *config->add_storage_nodes();
  second = config->storage_nodes(0);
  second.set_name("kv1");
  // Group i uses node i: a second node needs a second group.
  auto& g1 = *config->add_worker_groups();
  g1 = config->worker_groups(0);
  g1.set_name("g1");
  g1.mutable_ranks(0)->mutable_grpc()->set_port(0);
  g1.mutable_ranks(0)->set_metrics_port(0);
  for (auto& node : *config->mutable_storage_nodes()) {
    node.mutable_grpc()->set_port(0);
    node.set_pool_bytes(16 << 20);
    // TCP on loopback: the CI machine has no RDMA, and UCX's shared-memory transports
    // need nothing but also test nothing here.
    node.add_extra_flags("--ucx_tls=tcp");
    node.add_extra_flags("--ucx_net_devices=lo");
  }
  config->mutable_launcher()->set_startup_timeout_seconds(60);
  return *config;
}

LauncherOptions Options(const std::string& name) {
  LauncherOptions o;
  o.bin_dir = fs::absolute("cluster").string();
  const char* tmp = std::getenv("TEST_TMPDIR");
  o.run_dir = (fs::path(tmp ? tmp : fs::temp_directory_path().string()) / name).string();
  fs::create_directories(o.run_dir);
  return o;
}

TEST(LaunchStorageTest, PlanPassesReadyFileGeometryAndPool) {
  Launcher launcher(RemoteKvWithPickedPorts(), Options("plan"));
  auto plan = launcher.PlanProcesses("RUN");
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_GE(plan->size(), 2u);
  const ProcessSpec& kv0 = (*plan)[0];
  EXPECT_EQ(kv0.kind, "storage_node");
  EXPECT_EQ(kv0.ready_file, "RUN/storage-kv0.ready");
  EXPECT_THAT(kv0.flags, Contains("--grpc_port=0"));
  EXPECT_THAT(kv0.flags, Contains("--capacity_bytes=16777216"));
  // The node reads head_dim (64) from the model's config.json itself.
  EXPECT_THAT(kv0.flags, Contains("--model=" + fs::absolute("models/apr-tiny").string()));
  EXPECT_THAT(kv0.flags, Contains("--dtype=bf16"));
  EXPECT_THAT(kv0.flags, Contains("--ready_file=RUN/storage-kv0.ready"));
}

TEST(LaunchStorageTest, StorageNodesStartWithPickedPortsAndStopCleanly) {
  Launcher launcher(RemoteKvWithPickedPorts(), Options("run"));
  ASSERT_TRUE(launcher.StartStorageNodes().ok());
  const std::vector<std::string> addresses = launcher.storage_node_addresses();
  ASSERT_EQ(addresses.size(), 2u);
  std::set<std::string> distinct(addresses.begin(), addresses.end());
  EXPECT_EQ(distinct.size(), 2u);
  const std::vector<std::string> names = {"kv0", "kv1"};
  for (size_t i = 0; i < addresses.size(); ++i) {
    SCOPED_TRACE(addresses[i]);
    EXPECT_FALSE(absl::EndsWith(addresses[i], ":0")) << "the picked port was not reported";
    auto stub = kv1::KvStore::NewStub(
        grpc::CreateChannel(addresses[i], grpc::InsecureChannelCredentials()));
    {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      kv1::HealthResponse health;
      grpc::Status s = stub->Health(&ctx, kv1::HealthRequest(), &health);
      ASSERT_TRUE(s.ok()) << s.error_message();
      EXPECT_TRUE(health.serving());
      EXPECT_EQ(health.node_name(), names[i]);
    }
    {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      kv1::DataPlaneInfo info;
      grpc::Status s = stub->GetDataPlane(&ctx, kv1::GetDataPlaneRequest(), &info);
      ASSERT_TRUE(s.ok()) << s.error_message();
      EXPECT_EQ(info.block_bytes(), 2 * 16 * 64 * 2);  // K and V, 16 tokens, head_dim 64, bf16
      EXPECT_EQ(info.capacity_blocks(), (16 << 20) / info.block_bytes());
    }
  }
  // SIGTERM; each node must exit 0 within the stop timeout.
  absl::Status stopped = launcher.Stop();
  EXPECT_TRUE(stopped.ok()) << stopped;
  for (const std::string& a : addresses) {
    auto stub = kv1::KvStore::NewStub(grpc::CreateChannel(a, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
    kv1::HealthResponse health;
    EXPECT_FALSE(stub->Health(&ctx, kv1::HealthRequest(), &health).ok()) << a << " still serves";
  }
}

TEST(LaunchStorageTest, FixedPortsStillWork) {
  // A storage node's ready file is used for a fixed port too (no connection polling).
  ClusterConfig config = RemoteKvWithPickedPorts();
  config.mutable_storage_nodes()->RemoveLast();
  Launcher launcher(config, Options("fixed"));
  auto plan = launcher.PlanProcesses("RUN");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_FALSE((*plan)[0].ready_file.empty());
}

}  // namespace
}  // namespace apr::cluster
