// The launcher starts a local cluster (front end + CPU worker) on loopback from a config;
// several clients stream generations at once; every stream must receive exactly the
// tokens the single-sequence loop (runtime/generation.h) produces in this process for the
// same prompt and seed; then SIGTERM stops the cluster cleanly.
#include <signal.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "backends/cpu/cpu_decoder.h"
#include "cluster/client.h"
#include "cluster/process.h"
#include "cluster/serving.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/generation.h"

namespace apr::cluster {
namespace {

namespace fs = std::filesystem;
namespace gv1 = ::apr::generation::v1;
using ::testing::HasSubstr;

std::string TmpDir() {
  const char* t = std::getenv("TEST_TMPDIR");
  return t ? t : fs::temp_directory_path().string();
}

std::string Config(const std::string& device, int max_batch) {
  return absl::StrCat("name: \"it\"\n", "model { path: \"",
                      fs::absolute("models/apr-tiny").string(), "\" }\n",
                      "frontend { grpc { host: \"127.0.0.1\" port: 0 } metrics_port: 0 }\n",
                      "worker_groups { name: \"g0\" ranks { device: \"", device,
                      "\" grpc { host: \"127.0.0.1\" port: 0 } metrics_port: 0 } }\n",
                      "scheduler { max_batch_size: ", max_batch, " }\n",
                      "launcher { startup_timeout_seconds: 60 stop_timeout_seconds: 10 }\n");
}

// Runs launch with `config` through /bin/sh so its stderr lands in a file; exec keeps the
// launcher's pid, so signals reach it.
struct Launch {
  Launch(const std::string& name, const std::string& config_text) {
    const std::string dir = TmpDir();
    config = dir + "/" + name + ".textproto";
    ready = dir + "/" + name + ".ready";
    log = dir + "/" + name + ".log";
    std::ofstream(config) << config_text;
    fs::remove(ready);
    const std::string cmd = absl::StrCat("exec cluster/launch --config=", config,
                                         " --bin_dir=", fs::absolute("cluster").string(),
                                         " --ready_file=", ready, " >", log, " 2>&1");
    auto p = Process::Start({"/bin/sh", "-c", cmd});
    EXPECT_TRUE(p.ok()) << p.status();
    process.emplace(*p);
  }
  ~Launch() {
    if (process && !process->exited()) {
      process->Signal(SIGKILL);
      process->Wait(absl::Seconds(10));
    }
  }
  // Waits for the ready file (the cluster is SERVING) or the launcher's exit.
  int WaitReady(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline && !process->Poll()) {
      auto ports = ReadReadyFile(ready);
      if (ports.ok()) return (*ports)["grpc_port"];
      absl::SleepFor(absl::Milliseconds(50));
    }
    return 0;
  }
  std::string Log() const {
    std::stringstream ss;
    ss << std::ifstream(log).rdbuf();
    return ss.str();
  }

  std::string config, ready, log;
  std::optional<Process> process;
};

struct Case {
  std::vector<int32_t> prompt;
  int64_t max_tokens;
  SamplingParams sampling;
};

std::vector<Case> Cases() {
  std::vector<Case> cases;
  for (int i = 0; i < 6; ++i) {
    Case c;
    for (int k = 0; k < 4 + 9 * i; ++k) c.prompt.push_back(2 + (53 * k + 211 * i) % 4000);
    c.max_tokens = 10 + 4 * i;
    c.sampling = {i % 3 == 0 ? 0.0f : 0.8f, i == 4 ? 50 : 0, i == 5 ? 0.9f : 1.0f,
                  static_cast<uint64_t>(77 + i)};
    cases.push_back(c);
  }
  return cases;
}

TEST(LaunchIntegrationTest, ConcurrentStreamsGetExactlyTheirOwnTokens) {
  // The reference, in this process.
  auto decoder = cpu::CpuDecoder::Load("models/apr-tiny");
  ASSERT_TRUE(decoder.ok()) << decoder.status();
  const std::vector<Case> cases = Cases();
  std::vector<GenerationResult> expected;
  for (const Case& c : cases) {
    GenerationOptions opts;
    opts.max_new_tokens = c.max_tokens;
    opts.sampling = c.sampling;
    for (int64_t id : (*decoder)->config().eos_token_ids) opts.stop_token_ids.push_back(id);
    auto seq = (*decoder)->NewSequence();
    auto r = Generate(**decoder, *seq, c.prompt, opts, nullptr);
    ASSERT_TRUE(r.ok()) << r.status();
    expected.push_back(*r);
  }

  Launch launch("ok", Config("auto", /*max_batch=*/4));
  const int port = launch.WaitReady(absl::Seconds(90));
  ASSERT_GT(port, 0) << "the cluster did not start:\n" << launch.Log();
  const std::string address = absl::StrCat("127.0.0.1:", port);

  // Every client starts at once; with a batch of 4 and 6 clients, sequences join and
  // leave the running batch while others are mid-generation.
  std::vector<std::vector<int32_t>> streamed(cases.size());
  std::vector<absl::StatusOr<gv1::GenerationStats>> stats(cases.size(),
                                                          absl::UnknownError("not run"));
  std::vector<std::thread> clients;
  for (size_t i = 0; i < cases.size(); ++i) {
    clients.emplace_back([&, i] {
      auto stub = ConnectGeneration(address);
      gv1::GenerateRequest req;
      req.mutable_token_ids()->mutable_ids()->Add(cases[i].prompt.begin(), cases[i].prompt.end());
      req.set_max_tokens(cases[i].max_tokens);
      req.mutable_sampling()->set_temperature(cases[i].sampling.temperature);
      req.mutable_sampling()->set_top_k(cases[i].sampling.top_k);
      req.mutable_sampling()->set_top_p(cases[i].sampling.top_p);
      req.mutable_sampling()->set_seed(cases[i].sampling.seed);
      req.set_request_id(absl::StrCat("client", i));
      stats[i] = StreamGenerate(
          *stub, req,
          [&, i](const gv1::TokenChunk& chunk) {
            streamed[i].insert(streamed[i].end(), chunk.ids().begin(), chunk.ids().end());
          },
          /*timeout_seconds=*/120);
    });
  }
  for (auto& t : clients) t.join();
  for (size_t i = 0; i < cases.size(); ++i) {
    ASSERT_TRUE(stats[i].ok()) << "client " << i << ": " << stats[i].status();
    EXPECT_EQ(streamed[i], expected[i].tokens) << "client " << i;
    EXPECT_EQ(stats[i]->generated_tokens(), static_cast<int64_t>(expected[i].tokens.size()));
    EXPECT_EQ(stats[i]->prompt_tokens(), static_cast<int64_t>(cases[i].prompt.size()));
    EXPECT_EQ(StopReasonText(stats[i]->stop_reason()), StopReasonName(expected[i].stop));
    EXPECT_THAT(stats[i]->request_id(), HasSubstr(absl::StrCat("/client", i)));
    EXPECT_EQ(stats[i]->device(), "cpu");
  }

  // A text prompt goes through the front end's tokenizer.
  auto stub = ConnectGeneration(address);
  {
    grpc::ClientContext ctx;
    gv1::TokenizeRequest req;
    req.set_text("def fibonacci(n):");
    gv1::TokenizeResponse ids;
    ASSERT_TRUE(stub->Tokenize(&ctx, req, &ids).ok());
    gv1::GenerateRequest gen;
    gen.set_text("def fibonacci(n):");
    gen.set_max_tokens(8);
    std::vector<int32_t> got;
    std::string text;
    auto st = StreamGenerate(*stub, gen, [&](const gv1::TokenChunk& c) {
      got.insert(got.end(), c.ids().begin(), c.ids().end());
      text += c.text();
    });
    ASSERT_TRUE(st.ok()) << st.status();
    GenerationOptions opts;
    opts.max_new_tokens = 8;
    opts.sampling.top_p = 1.0f;
    for (int64_t id : (*decoder)->config().eos_token_ids) opts.stop_token_ids.push_back(id);
    auto seq = (*decoder)->NewSequence();
    std::vector<int32_t> prompt(ids.ids().begin(), ids.ids().end());
    auto ref = Generate(**decoder, *seq, prompt, opts, nullptr);
    ASSERT_TRUE(ref.ok());
    EXPECT_EQ(got, ref->tokens);
    EXPECT_FALSE(text.empty());
  }
  // Bad requests are refused with a reason.
  {
    gv1::GenerateRequest bad;
    bad.mutable_token_ids()->add_ids(999999);
    auto st = StreamGenerate(*stub, bad, nullptr);
    EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(st.status().message()), HasSubstr("outside the vocabulary"));
  }

  // SIGTERM: the launcher stops the front end, then the worker, and exits 0.
  launch.process->Signal(SIGTERM);
  std::optional<int> status = launch.process->Wait(absl::Seconds(30));
  ASSERT_TRUE(status.has_value()) << "the launcher did not stop:\n" << launch.Log();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << DescribeWaitStatus(*status) << "\n"
      << launch.Log();
  EXPECT_THAT(launch.Log(), HasSubstr("launch: stopped"));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  gv1::HealthResponse health;
  EXPECT_FALSE(stub->Health(&ctx, gv1::HealthRequest(), &health).ok()) << "still serving";
}

TEST(LaunchIntegrationTest, AFailingStartIsReportedAndEverythingStops) {
  // This machine has no GPU: the worker refuses cuda:0 at LoadModel, the front end
  // exits, and the launcher says so and exits non-zero.
  Launch launch("fail", Config("cuda:0", 2));
  std::optional<int> status = launch.process->Wait(absl::Seconds(90));
  ASSERT_TRUE(status.has_value()) << launch.Log();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << DescribeWaitStatus(*status);
  const std::string log = launch.Log();
  EXPECT_THAT(log, HasSubstr("device cuda:0: no CUDA device on this machine"));
  EXPECT_THAT(log, HasSubstr("launch: frontend exited with status 1 while"));
}

}  // namespace
}  // namespace apr::cluster
