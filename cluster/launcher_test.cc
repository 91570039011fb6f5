// What the launcher starts for a config: the flags each process gets.
#include "cluster/launcher.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace apr::cluster {
namespace {

using ::testing::Contains;
using ::testing::Not;

std::vector<ProcessSpec> Plan(const std::string& text) {
  auto config = ParseConfig(text, "test.textproto");
  EXPECT_TRUE(config.ok()) << config.status();
  Launcher launcher(*config, {});
  auto plan = launcher.PlanProcesses("/tmp/launcher-test");
  EXPECT_TRUE(plan.ok()) << plan.status();
  return plan.ok() ? *plan : std::vector<ProcessSpec>{};
}

TEST(LauncherTest, ARanksExtraFlagsReachItsWorkerOnly) {
  const std::vector<ProcessSpec> plan = Plan(R"(
model { path: "models/apr-tiny" }
frontend { grpc { host: "127.0.0.1" port: 0 } }
worker_groups { name: "g0" ranks { device: "cpu" grpc { host: "127.0.0.1" port: 0 } } }
worker_groups {
  name: "g1"
  ranks {
    device: "cpu"
    grpc { host: "127.0.0.1" port: 0 }
    extra_flags: "--kv_store=127.0.0.1:20001"
    extra_flags: "--kv_reconnect_timeout_s=3"
  }
}
)");
  ASSERT_EQ(plan.size(), 3u);  // two workers, the front end
  EXPECT_EQ(plan[1].name, "g1/0");
  EXPECT_THAT(plan[1].flags, Contains("--kv_store=127.0.0.1:20001"));
  EXPECT_THAT(plan[1].flags, Contains("--kv_reconnect_timeout_s=3"));
  EXPECT_EQ(plan[0].name, "g0/0");
  EXPECT_THAT(plan[0].flags, Not(Contains("--kv_store=127.0.0.1:20001")));
}

TEST(LauncherTest, StorageSecurityReachesNodesAndWorkers) {
  const std::vector<ProcessSpec> plan = Plan(R"(
model { path: "models/apr-tiny" }
frontend { grpc { host: "127.0.0.1" port: 0 } }
worker_groups { name: "g0" ranks { device: "cpu" grpc { host: "127.0.0.1" port: 0 } } }
kv_cache { placement: PLACEMENT_REMOTE }
storage_nodes { name: "kv0" grpc { host: "127.0.0.1" port: 0 } }
storage_security {
  node_tls { cert_file: "/pki/node.pem" key_file: "/pki/node.key" ca_file: "/pki/ca.pem" }
  worker_tls {
    cert_file: "/pki/w.pem" key_file: "/pki/w.key" ca_file: "/pki/ca.pem"
    server_name: "localhost"
  }
  auth_token_file: "/pki/token"
}
)");
  ASSERT_EQ(plan.size(), 3u);  // the node, the worker, the front end
  EXPECT_EQ(plan[0].kind, "storage_node");
  for (const char* f : {"--tls_cert=/pki/node.pem", "--tls_key=/pki/node.key",
                        "--tls_ca=/pki/ca.pem", "--auth_token_file=/pki/token"}) {
    EXPECT_THAT(plan[0].flags, Contains(f));
  }
  EXPECT_EQ(plan[1].kind, "worker");
  for (const char* f :
       {"--kv_tls_cert=/pki/w.pem", "--kv_tls_key=/pki/w.key", "--kv_tls_ca=/pki/ca.pem",
        "--kv_tls_server_name=localhost", "--kv_auth_token_file=/pki/token"}) {
    EXPECT_THAT(plan[1].flags, Contains(f));
  }
  EXPECT_THAT(plan[2].flags, Not(Contains("--auth_token_file=/pki/token")));
}

// A run directory that cannot be made is refused before any process starts, naming it
// (one that does not exist yet is made: tests/cluster:gpu_node_loss_test relies on it).
TEST(LauncherTest, ARunDirectoryThatCannotBeMadeIsNamed) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::filesystem::path file = std::filesystem::path(tmp ? tmp : "/tmp") / "a-file";
  std::ofstream(file) << "not a directory";
  auto config = ParseConfig(R"(
model { path: "models/apr-tiny" }
frontend { grpc { host: "127.0.0.1" port: 0 } }
worker_groups { name: "g0" ranks { device: "cpu" grpc { host: "127.0.0.1" port: 0 } } }
)",
                            "test.textproto");
  ASSERT_TRUE(config.ok()) << config.status();
  LauncherOptions options;
  options.run_dir = (file / "run").string();
  Launcher launcher(*config, options);
  const absl::Status s = launcher.Start();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), ::testing::HasSubstr("cannot make the run directory " +
                                                options.run_dir));
  // A fresh one is made (the start itself then fails here: no binaries in bin_dir).
  const std::filesystem::path fresh = file.parent_path() / "fresh" / "run";
  std::filesystem::remove_all(fresh.parent_path());
  LauncherOptions made;
  made.run_dir = fresh.string();
  made.bin_dir = (file.parent_path() / "no-binaries").string();
  Launcher second(*config, made);
  EXPECT_FALSE(second.Start().ok());
  EXPECT_TRUE(std::filesystem::is_directory(fresh));
  EXPECT_TRUE(second.Stop().ok());
}

}  // namespace
}  // namespace apr::cluster
