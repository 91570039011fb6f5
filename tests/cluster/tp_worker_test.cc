// Tensor parallelism end to end on a machine with 2 GPUs (tag gpu): real worker processes
// (one per GPU), driven through the front end's WorkerGroup over the Worker API. A TP = 2
// group (cuda:0 + cuda:1; rank 0 creates the NCCL unique id, both LoadModel calls run
// concurrently) must produce exactly the greedy tokens of a TP = 1 worker on the same
// model, over a schedule with prefills of several lengths, decode batches of 3 (GEMV path)
// and 6 (cuBLAS path); both ranks must return bitwise the same logits.
//
// Models: $APR_TP_MODELS (comma-separated folders; default models/apr-tiny). Worker
// binary: $APR_WORKER_BIN (default cluster/worker, the Bazel runfile).
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "cluster/process.h"
#include "cluster/serving.h"
#include "cluster/worker_group.h"
#include "gtest/gtest.h"
#include "rpc/worker/v1/worker.grpc.pb.h"

namespace apr::cluster {
namespace {

namespace fs = std::filesystem;
namespace wv1 = ::apr::worker::v1;

std::string Env(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

std::string TmpDir() {
  const char* t = std::getenv("TEST_TMPDIR");
  return t ? t : fs::temp_directory_path().string();
}

// One worker process on `device`, its port read from its ready file.
struct Worker {
  Worker(const std::string& name, const std::string& device) : device(device) {
    const std::string ready = TmpDir() + "/" + name + ".ready";
    fs::remove(ready);
    auto p = Process::Start({Env("APR_WORKER_BIN", "cluster/worker"), "--name=" + name,
                             "--device=" + device, "--grpc_port=0", "--metrics_port=0",
                             "--ready_file=" + ready});
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return;
    process.emplace(*p);
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (absl::Now() < deadline && !process->Poll()) {
      auto ports = ReadReadyFile(ready);
      if (ports.ok()) {
        address = absl::StrCat("127.0.0.1:", (*ports)["grpc_port"]);
        return;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    ADD_FAILURE() << name << " did not get ready";
  }
  ~Worker() { Await(); }
  void Terminate() {
    if (process && !process->exited()) process->Signal(SIGTERM);
  }
  void Await() {
    if (!process || process->exited()) return;
    Terminate();
    std::optional<int> status = process->Wait(absl::Seconds(30));
    if (!status) {
      process->Signal(SIGKILL);
      process->Wait(absl::Seconds(5));
      ADD_FAILURE() << "worker on " << device << " did not stop within 30 s of SIGTERM";
    } else {
      EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
          << "worker on " << device << ": " << DescribeWaitStatus(*status);
    }
  }
  std::string device, address;
  std::optional<Process> process;
};

struct Group {
  Group(const std::string& name, const std::vector<std::string>& devices, const std::string& model,
        int budget_tokens) {
    std::vector<RankAddress> ranks;
    for (size_t r = 0; r < devices.size(); ++r) {
      workers.push_back(std::make_unique<Worker>(absl::StrCat(name, "-", r), devices[r]));
      ranks.push_back({workers.back()->address, devices[r]});
    }
    group = std::make_unique<WorkerGroup>(name, ranks);
    wv1::KvCache kv;
    kv.set_budget_tokens(budget_tokens);
    const absl::Time t0 = absl::Now();
    load = group->Load(fs::absolute(model).string(), 8, kv, absl::Seconds(120));
    std::printf("%s: loaded %s on %zu rank(s) in %.2f s: %s\n", name.c_str(), model.c_str(),
                devices.size(), absl::ToDoubleSeconds(absl::Now() - t0), load.ToString().c_str());
  }
  ~Group() {
    // Every rank stops at once, as the launcher stops them.
    for (auto& w : workers) w->Terminate();
    for (auto& w : workers) w->Await();
  }
  std::vector<std::unique_ptr<Worker>> workers;
  std::unique_ptr<WorkerGroup> group;
  absl::Status load;
};

std::vector<std::vector<int32_t>> Prompts(int64_t vocab) {
  std::vector<std::vector<int32_t>> prompts;
  for (int len : {5, 33, 130, 300, 600, 17}) {
    std::vector<int32_t> p;
    for (int k = 0; k < len; ++k) {
      p.push_back(static_cast<int32_t>(2 + (7919 * k + 104729 * len) % (vocab - 2)));
    }
    prompts.push_back(std::move(p));
  }
  return prompts;
}

// Greedy tokens of every prompt under one fixed schedule: start all, 8 steps of the first
// three, 16 steps of all six.
absl::StatusOr<std::vector<std::vector<int32_t>>> RunSchedule(WorkerGroup& g) {
  const auto prompts = Prompts(g.vocab_size());
  std::vector<std::vector<int32_t>> out(prompts.size());
  const SamplingParams greedy{0.0f, 0, 1.0f, 1};
  for (size_t i = 0; i < prompts.size(); ++i) {
    absl::StatusOr<int32_t> t = g.Start(i + 1, prompts[i], greedy);
    if (!t.ok()) return t.status();
    out[i].push_back(*t);
  }
  auto steps = [&](int n, int batch) -> absl::Status {
    for (int s = 0; s < n; ++s) {
      std::vector<uint64_t> ids;
      std::vector<int32_t> tokens;
      for (int i = 0; i < batch; ++i) {
        ids.push_back(i + 1);
        tokens.push_back(out[i].back());
      }
      auto next = g.Step(ids, tokens);
      if (!next.ok()) return next.status();
      for (int i = 0; i < batch; ++i) out[i].push_back((*next)[i]);
    }
    return absl::OkStatus();
  };
  APR_RETURN_IF_ERROR(steps(8, 3));
  APR_RETURN_IF_ERROR(steps(16, 6));
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < prompts.size(); ++i) ids.push_back(i + 1);
  g.Free(ids);
  return out;
}

// StartSequence with logits on every rank of a group at once (a TP step needs all
// ranks); the logits of each rank.
std::vector<std::vector<float>> LogitsOnAllRanks(const Group& g,
                                                 const std::vector<int32_t>& prompt) {
  std::vector<std::future<std::vector<float>>> f;
  for (const auto& w : g.workers) {
    f.push_back(std::async(std::launch::async, [&w, &prompt] {
      grpc::ChannelArguments args;
      args.SetMaxReceiveMessageSize(1 << 30);
      auto stub = wv1::Worker::NewStub(
          grpc::CreateCustomChannel(w->address, grpc::InsecureChannelCredentials(), args));
      wv1::StartSequenceRequest req;
      req.set_sequence_id(1000);
      req.mutable_prompt_ids()->Add(prompt.begin(), prompt.end());
      req.set_return_logits(true);
      wv1::StartSequenceResponse resp;
      grpc::ClientContext ctx;
      grpc::Status s = stub->StartSequence(&ctx, req, &resp);
      EXPECT_TRUE(s.ok()) << s.error_message();
      grpc::ClientContext ctx2;
      wv1::FreeSequencesRequest free;
      free.add_sequence_ids(1000);
      wv1::FreeSequencesResponse fr;
      stub->FreeSequences(&ctx2, free, &fr);
      return std::vector<float>(resp.logits().begin(), resp.logits().end());
    }));
  }
  std::vector<std::vector<float>> out;
  for (auto& x : f) out.push_back(x.get());
  return out;
}

class TpWorkerTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TpWorkerTest, Tp2GreedyTokensEqualTp1) {
  setenv("NCCL_NVLS_ENABLE", "0", 0);
  setenv("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1", 0);
  setenv("NVSHMEM_DISABLE_NVLS", "1", 0);
  const std::string model = GetParam();
  // Budget 256: with a predictor.safetensors in the folder the long prompts are decoded
  // block-sparse (8 predicted blocks out of up to 37 candidates); otherwise dense.
  Group tp1("tp1", {"cuda:0"}, model, 256);
  ASSERT_TRUE(tp1.load.ok()) << tp1.load;
  Group tp2("tp2", {"cuda:0", "cuda:1"}, model, 256);
  ASSERT_TRUE(tp2.load.ok()) << tp2.load;
  EXPECT_EQ(tp2.group->loaded_devices(), (std::vector<std::string>{"cuda:0", "cuda:1"}));
  ASSERT_EQ(tp1.group->vocab_size(), tp2.group->vocab_size());

  absl::Time t0 = absl::Now();
  auto a = RunSchedule(*tp1.group);
  ASSERT_TRUE(a.ok()) << a.status();
  const double s1 = absl::ToDoubleSeconds(absl::Now() - t0);
  t0 = absl::Now();
  auto b = RunSchedule(*tp2.group);
  ASSERT_TRUE(b.ok()) << b.status();
  const double s2 = absl::ToDoubleSeconds(absl::Now() - t0);
  int same = 0, total = 0;
  for (size_t i = 0; i < a->size(); ++i) {
    int first_diff = -1;
    for (size_t t = 0; t < (*a)[i].size(); ++t) {
      ++total;
      if ((*a)[i][t] == (*b)[i][t]) {
        ++same;
      } else if (first_diff < 0) {
        first_diff = static_cast<int>(t);
      }
    }
    EXPECT_EQ((*a)[i], (*b)[i]) << "prompt " << i << ": first difference at token " << first_diff;
  }
  std::printf("TPCHECK model=%s tokens_equal=%d/%d tp1_seconds=%.2f tp2_seconds=%.2f\n",
              model.c_str(), same, total, s1, s2);

  // Logits of one prompt: TP = 2 ranks bitwise equal; TP = 2 against TP = 1 within
  // float32 summation-order noise, same argmax.
  const auto prompt = Prompts(tp1.group->vocab_size())[3];
  const auto l1 = LogitsOnAllRanks(tp1, prompt);
  const auto l2 = LogitsOnAllRanks(tp2, prompt);
  ASSERT_EQ(l1.size(), 1u);
  ASSERT_EQ(l2.size(), 2u);
  ASSERT_EQ(l1[0].size(), l2[0].size());
  ASSERT_FALSE(l1[0].empty());
  EXPECT_TRUE(l2[0] == l2[1]) << "the two ranks' logits differ";
  double max_diff = 0, max_abs = 0;
  size_t arg1 = 0, arg2 = 0;
  for (size_t v = 0; v < l1[0].size(); ++v) {
    max_diff = std::max(max_diff, std::abs(static_cast<double>(l1[0][v]) - l2[0][v]));
    max_abs = std::max(max_abs, std::abs(static_cast<double>(l1[0][v])));
    if (l1[0][v] > l1[0][arg1]) arg1 = v;
    if (l2[0][v] > l2[0][arg2]) arg2 = v;
  }
  EXPECT_EQ(arg1, arg2);
  EXPECT_LT(max_diff, 1e-2 * max_abs);
  std::printf("TPCHECK model=%s logits max|tp1-tp2|=%.3g max|logit|=%.3g ranks_bitwise_equal=%d\n",
              model.c_str(), max_diff, max_abs, l2[0] == l2[1] ? 1 : 0);
}

INSTANTIATE_TEST_SUITE_P(Models, TpWorkerTest,
                         ::testing::ValuesIn(std::vector<std::string>(absl::StrSplit(
                             Env("APR_TP_MODELS", "models/apr-tiny"), ',', absl::SkipEmpty()))),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string n = fs::path(info.param).filename().string();
                           for (char& c : n) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return absl::StrCat(info.index, "_", n);
                         });

}  // namespace
}  // namespace apr::cluster
