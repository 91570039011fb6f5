#include "tests/cluster/remote_kv_harness.h"

#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cluster/client.h"
#include "cluster/serving.h"
#include "gtest/gtest.h"
#include "rpc/generation/v1/generation.grpc.pb.h"
#include "rpc/kvstore/v1/kvstore.grpc.pb.h"
#include "tests/reliability/harness.h"

namespace apr::cluster::testing {

namespace fs = std::filesystem;
namespace gv1 = ::apr::generation::v1;
namespace kv1 = ::apr::kvstore::v1;
namespace wv1 = ::apr::worker::v1;
using kvstore::testing::StorageNodeProcess;

std::unique_ptr<StorageNodeProcess> StartNode(const std::string& name, int port) {
  std::vector<std::string> flags = {"--capacity_blocks=4096",
                                    "--model=" + fs::absolute("models/apr-tiny").string(),
                                    "--dtype=f32",
                                    "--ucx_tls=tcp",
                                    "--ucx_net_devices=lo",
                                    "--node_name=" + name};
  if (port != 0) flags.push_back(absl::StrCat("--grpc_port=", port));
  auto node = StorageNodeProcess::Start(kvstore::testing::StorageNodeBinary(), flags);
  EXPECT_TRUE(node.ok()) << node.status();
  return node.ok() ? *std::move(node) : nullptr;
}

int64_t UsedBlocks(const StorageNodeProcess& node) {
  auto stub = kv1::KvStore::NewStub(
      grpc::CreateChannel(node.address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  kv1::StatsResponse r;
  grpc::Status s = stub->Stats(&ctx, kv1::StatsRequest(), &r);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return r.used_blocks();
}

RemoteKvWorker::RemoteKvWorker(const std::string& name, const std::vector<std::string>& nodes,
                               int replication, const std::vector<std::string>& extra_flags) {
  const std::string ready = reliability::TmpDir() + "/" + name + ".ready";
  fs::remove(ready);
  std::vector<std::string> argv = {"cluster/worker", "--name=" + name,   "--device=cpu",
                                   "--grpc_port=0",  "--metrics_port=0", "--ready_file=" + ready};
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  auto p = Process::Start(argv);
  EXPECT_TRUE(p.ok()) << p.status();
  if (!p.ok()) return;
  process_.emplace(*p);
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (absl::Now() < deadline && !process_->Poll()) {
    auto ports = ReadReadyFile(ready);
    if (ports.ok()) {
      stub_ = wv1::Worker::NewStub(grpc::CreateChannel(
          absl::StrCat("127.0.0.1:", (*ports)["grpc_port"]), grpc::InsecureChannelCredentials()));
      break;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  if (stub_ == nullptr) {
    ADD_FAILURE() << name << " did not get ready";
    return;
  }
  wv1::LoadModelRequest req;
  req.set_model_path(fs::absolute("models/apr-tiny").string());
  req.set_device("cpu");
  req.set_max_sequences(8);
  req.mutable_kv_cache()->set_placement(wv1::KvCache::PLACEMENT_REMOTE);
  if (replication > 1) req.mutable_kv_cache()->set_replication(replication);
  for (const std::string& n : nodes) req.mutable_kv_cache()->add_storage_nodes(n);
  wv1::LoadModelResponse resp;
  grpc::ClientContext ctx;
  grpc::Status s = stub_->LoadModel(&ctx, req, &resp);
  EXPECT_TRUE(s.ok()) << name << ": " << s.error_message();
}

RemoteKvWorker::~RemoteKvWorker() {
  if (!process_ || process_->exited()) return;
  process_->Signal(SIGTERM);
  if (!process_->Wait(absl::Seconds(30))) {
    process_->Signal(SIGKILL);
    process_->Wait(absl::Seconds(5));
    ADD_FAILURE() << "a worker did not stop within 30 s of SIGTERM";
  }
}

wv1::WorkerStats RemoteKvWorker::Stats() {
  wv1::WorkerStats st;
  grpc::ClientContext ctx;
  grpc::Status s = stub_->GetStats(&ctx, wv1::GetStatsRequest(), &st);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return st;
}

int64_t RemoteKvWorker::Rebuilt() { return Stats().rebuilt_sequences(); }

int64_t RemoteKvWorker::FetchBytes() { return Stats().fetch_bytes(); }

LaunchedStreams StreamThreeGreedy(const std::string& name, const std::string& config_text) {
  LaunchedStreams result;
  reliability::Launch launch(name, config_text);
  const int port = launch.WaitReady(absl::Seconds(90));
  EXPECT_GT(port, 0) << launch.Log();
  if (port == 0) {
    result.log = launch.Log();
    return result;
  }
  auto fe = ConnectGeneration(absl::StrCat("127.0.0.1:", port));
  result.tokens.resize(3);
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      gv1::GenerateRequest r;
      for (int k = 0; k < 100 + 150 * i; ++k)
        r.mutable_token_ids()->add_ids(5 + (k * 53 + i) % 3000);
      r.set_max_tokens(32);
      r.set_ignore_eos(true);
      r.mutable_sampling()->set_temperature(0);
      auto st = StreamGenerate(*fe, r, [&](const gv1::TokenChunk& c) {
        result.tokens[i].insert(result.tokens[i].end(), c.ids().begin(), c.ids().end());
      });
      EXPECT_TRUE(st.ok()) << st.status();
    });
  }
  for (auto& t : threads) t.join();
  result.log = launch.Log();
  return result;
}

std::string ReadFile(const std::string& path) {
  std::stringstream ss;
  ss << std::ifstream(path).rdbuf();
  return ss.str();
}

}  // namespace apr::cluster::testing
