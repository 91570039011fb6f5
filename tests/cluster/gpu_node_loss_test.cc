// A storage node killed under a served CUDA worker (tag gpu; tools/device/served_run.sh
// stage `fault` runs it there). configs/offload_remote (CUDA worker, KV in a storage-node
// process over UCX) is launched twice: once to record every stream's uninterrupted tokens,
// once to kill the node (SIGKILL, pid from its Health RPC) when every stream has streamed
// kMinTokensBeforeKill tokens. The CUDA worker does not rebuild sequences on another node
// (docs/RELIABILITY.md "The storage node killed mid-generation"), so the contract checked
// here is the clean per-request error: every in-flight stream ends with UNAVAILABLE naming
// the node within kFailWithin, what it streamed before is the uninterrupted run's prefix
// (nothing lost or mixed between streams), and the worker stays up: the front end still
// answers and a new request is refused the same way instead of hanging.
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "cluster/client.h"
#include "cluster/config.h"
#include "cluster/launcher.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "rpc/kvstore/v1/kvstore.grpc.pb.h"
#include "runtime/tokenizer/tokenizer.h"

namespace apr::cluster {
namespace {

namespace fs = std::filesystem;
namespace gv1 = ::apr::generation::v1;
namespace kv1 = ::apr::kvstore::v1;

constexpr int kStreams = 4;
constexpr int kPromptTokens = 1500;
constexpr int kMaxTokens = 1500;  // long enough that the kill lands mid-generation
constexpr int kMinTokensBeforeKill = 16;
constexpr absl::Duration kFailWithin = absl::Seconds(30);

std::string BinDir() {
  const char* d = std::getenv("APR_BIN_DIR");
  return fs::absolute(d ? d : "cluster").string();
}

std::string TmpDir() {
  const char* t = std::getenv("TEST_TMPDIR");
  return t ? t : fs::temp_directory_path().string();
}

// Real text (the repository's documentation) through apr-tiny's tokenizer.
std::vector<std::vector<int32_t>> Prompts() {
  std::string text;
  for (const auto& e : fs::directory_iterator("docs")) {
    if (e.path().extension() != ".md") continue;
    std::stringstream ss;
    ss << std::ifstream(e.path()).rdbuf();
    text += ss.str();
  }
  auto tokenizer = Tokenizer::FromFile("models/apr-tiny/tokenizer.json");
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  if (!tokenizer.ok()) return {};
  const std::vector<int32_t> ids = (*tokenizer)->Encode(text, /*add_special_tokens=*/false);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < kStreams; ++i) {
    const size_t start = static_cast<size_t>(i) * 3001 % (ids.size() - kPromptTokens);
    prompts.emplace_back(ids.begin() + start, ids.begin() + start + kPromptTokens);
  }
  return prompts;
}

ClusterConfig RemoteConfig() {
  auto config = LoadConfig("configs/offload_remote.textproto");
  EXPECT_TRUE(config.ok()) << config.status();
  if (!config.ok()) return {};
  config->mutable_model()->set_path(fs::absolute("models/apr-tiny").string());
  config->mutable_frontend()->mutable_grpc()->set_port(0);
  config->mutable_frontend()->set_metrics_port(0);
  for (auto& g : *config->mutable_worker_groups()) {
    for (auto& r : *g.mutable_ranks()) {
      r.mutable_grpc()->set_port(0);
      r.set_metrics_port(0);
    }
  }
  for (auto& n : *config->mutable_storage_nodes()) {
    n.mutable_grpc()->set_port(0);
    n.set_pool_bytes(int64_t{1} << 30);
  }
  config->mutable_scheduler()->set_max_batch_size(kStreams);
  config->mutable_launcher()->set_startup_timeout_seconds(120);
  return *config;
}

struct StreamResult {
  std::vector<int32_t> tokens;
  absl::Status status;
  absl::Time ended;
};

gv1::GenerateRequest Request(const std::vector<int32_t>& prompt) {
  gv1::GenerateRequest req;
  req.mutable_token_ids()->mutable_ids()->Add(prompt.begin(), prompt.end());
  req.set_max_tokens(kMaxTokens);
  req.set_ignore_eos(true);
  req.mutable_sampling()->set_temperature(0);
  return req;
}

// Streams every prompt at once; `on_progress` sees the smallest token count of all
// streams after every chunk (from the clients' threads).
std::vector<StreamResult> StreamAll(const std::string& frontend,
                                    const std::vector<std::vector<int32_t>>& prompts,
                                    const std::function<void(int)>& on_progress) {
  std::vector<StreamResult> results(prompts.size());
  std::vector<std::atomic<int>> counts(prompts.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < prompts.size(); ++i) {
    clients.emplace_back([&, i] {
      auto stub = ConnectGeneration(frontend);
      auto stats = StreamGenerate(
          *stub, Request(prompts[i]),
          [&, i](const gv1::TokenChunk& c) {
            results[i].tokens.insert(results[i].tokens.end(), c.ids().begin(), c.ids().end());
            counts[i] = static_cast<int>(results[i].tokens.size());
            int least = kMaxTokens;
            for (const auto& n : counts) least = std::min(least, n.load());
            on_progress(least);
          },
          /*timeout_seconds=*/180);
      results[i].status = stats.status();
      results[i].ended = absl::Now();
    });
  }
  for (auto& t : clients) t.join();
  return results;
}

int64_t NodePid(const std::string& address) {
  auto stub =
      kv1::KvStore::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  kv1::HealthResponse health;
  const grpc::Status s = stub->Health(&ctx, kv1::HealthRequest(), &health);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return s.ok() ? health.pid() : 0;
}

TEST(GpuNodeLossTest, StreamsFailCleanlyNamingTheNodeAndTheWorkerStaysUp) {
  const std::vector<std::vector<int32_t>> prompts = Prompts();
  ASSERT_EQ(prompts.size(), static_cast<size_t>(kStreams));
  LauncherOptions lo;
  lo.bin_dir = BinDir();

  // The uninterrupted run.
  lo.run_dir = (fs::path(TmpDir()) / "uninterrupted").string();
  fs::remove_all(lo.run_dir);  // the launcher makes it
  std::vector<StreamResult> clean;
  {
    Launcher launcher(RemoteConfig(), lo);
    const absl::Status started = launcher.Start();
    ASSERT_TRUE(started.ok()) << started;
    clean = StreamAll(launcher.frontend_address(), prompts, [](int) {});
    EXPECT_TRUE(launcher.Stop().ok());
  }
  for (int i = 0; i < kStreams; ++i) {
    ASSERT_TRUE(clean[i].status.ok()) << "uninterrupted stream " << i << ": " << clean[i].status;
    ASSERT_EQ(clean[i].tokens.size(), static_cast<size_t>(kMaxTokens));
  }

  // The same streams; the node killed once each has kMinTokensBeforeKill tokens.
  lo.run_dir = (fs::path(TmpDir()) / "killed").string();
  fs::remove_all(lo.run_dir);
  Launcher launcher(RemoteConfig(), lo);
  const absl::Status started = launcher.Start();
  ASSERT_TRUE(started.ok()) << started;
  ASSERT_EQ(launcher.storage_node_addresses().size(), 1u);
  const std::string node = launcher.storage_node_addresses()[0];
  const int64_t pid = NodePid(node);
  ASSERT_GT(pid, 0);
  std::atomic<bool> killed{false};
  absl::Time killed_at;
  const auto results = StreamAll(launcher.frontend_address(), prompts, [&](int least) {
    if (least < kMinTokensBeforeKill || killed.exchange(true)) return;
    killed_at = absl::Now();
    kill(static_cast<pid_t>(pid), SIGKILL);
  });
  ASSERT_TRUE(killed) << "every stream ended before the kill";
  for (int i = 0; i < kStreams; ++i) {
    const StreamResult& r = results[i];
    EXPECT_EQ(r.status.code(), absl::StatusCode::kUnavailable)
        << "stream " << i << ": " << r.status;
    EXPECT_NE(r.status.message().find(node), std::string::npos)
        << "stream " << i << " does not name the node " << node << ": " << r.status;
    EXPECT_LE(r.ended - killed_at, kFailWithin) << "stream " << i;
    EXPECT_GE(r.tokens.size(), static_cast<size_t>(kMinTokensBeforeKill)) << "stream " << i;
    EXPECT_LT(r.tokens.size(), static_cast<size_t>(kMaxTokens)) << "stream " << i;
    const size_t n = std::min(r.tokens.size(), clean[i].tokens.size());
    EXPECT_TRUE(std::equal(r.tokens.begin(), r.tokens.begin() + n, clean[i].tokens.begin()))
        << "stream " << i << ": the tokens before the failure differ from the uninterrupted run";
    std::fprintf(stderr, "NODE LOSS stream %d: %zu tokens, then %s after %.2f s: %s\n", i,
                 r.tokens.size(), absl::StatusCodeToString(r.status.code()).c_str(),
                 absl::ToDoubleSeconds(r.ended - killed_at),
                 std::string(r.status.message()).c_str());
  }

  // The worker stays up: the front end answers, and a new request is refused (the node is
  // gone) within the same bound instead of hanging or taking the worker down.
  auto stub = ConnectGeneration(launcher.frontend_address());
  gv1::ModelInfo info;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub->GetModelInfo(&ctx, gv1::GetModelInfoRequest(), &info).ok());
  const absl::Time asked = absl::Now();
  auto after = StreamGenerate(
      *stub, Request(prompts[0]), [](const gv1::TokenChunk&) {}, 60);
  EXPECT_FALSE(after.ok()) << "a request served without the node";
  EXPECT_LE(absl::Now() - asked, kFailWithin) << after.status();
  std::fprintf(stderr, "NODE LOSS new request after %.2f s: %s\n",
               absl::ToDoubleSeconds(absl::Now() - asked), after.status().ToString().c_str());
  EXPECT_TRUE(launcher.failure().empty()) << launcher.failure();
  const absl::Status stopped = launcher.Stop();  // names the killed node; the rest stop cleanly
  std::fprintf(stderr, "NODE LOSS stop: %s\n", stopped.ToString().c_str());
}

}  // namespace
}  // namespace apr::cluster
