#include "tests/reliability/load_driver.h"

#include <algorithm>
#include <chrono>
#include <mutex>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "backends/cpu/cpu_decoder.h"
#include "cluster/client.h"
#include "runtime/generation.h"
#include "runtime/scheduler.h"
#include "runtime/step_engine.h"

namespace apr::reliability {

namespace gv1 = ::apr::generation::v1;

gv1::GenerateRequest LoadRequest(int i, const LoadOptions& o) {
  gv1::GenerateRequest r;
  const int n = 3 + i % 13;
  for (int k = 0; k < n; ++k) r.mutable_token_ids()->add_ids(2 + (131 * k + 7919 * i) % 4000);
  r.set_max_tokens(o.min_tokens + i % (o.max_tokens - o.min_tokens + 1));
  r.mutable_sampling()->set_temperature(i % 4 == 0 ? 0.0f : 1.0f);
  r.mutable_sampling()->set_top_k(i % 3 == 0 ? 40 : 0);
  r.mutable_sampling()->set_seed(0x5eed0000u + i);
  r.set_request_id(absl::StrCat("load-", i));
  return r;
}

namespace {

struct Expected {
  std::vector<int32_t> tokens;
  StopReason stop = StopReason::kMaxTokens;
};

gv1::StopReason ToProto(StopReason r) {
  switch (r) {
    case StopReason::kMaxTokens:
      return gv1::STOP_REASON_MAX_TOKENS;
    case StopReason::kStopToken:
      return gv1::STOP_REASON_STOP_TOKEN;
    case StopReason::kContextFull:
      return gv1::STOP_REASON_CONTEXT_FULL;
    case StopReason::kCancelled:
      return gv1::STOP_REASON_CANCELLED;
  }
  return gv1::STOP_REASON_UNSPECIFIED;
}

absl::StatusOr<std::vector<Expected>> References(const LoadOptions& o) {
  auto decoder = cpu::CpuDecoder::Load(o.model_dir);
  if (!decoder.ok()) return decoder.status();
  DecoderStepEngine engine(**decoder);
  Scheduler scheduler(engine, {.max_batch_size = 64, .max_queue_size = o.streams + 1});
  std::vector<Expected> out(o.streams);
  std::vector<absl::Status> status(o.streams);
  for (int i = 0; i < o.streams; ++i) {
    const gv1::GenerateRequest req = LoadRequest(i, o);
    SchedulerRequest r;
    r.prompt.assign(req.token_ids().ids().begin(), req.token_ids().ids().end());
    r.options.max_new_tokens = req.max_tokens();
    r.options.sampling = {req.sampling().temperature(), req.sampling().top_k(), 1.0f,
                          req.sampling().seed()};
    for (int64_t id : (*decoder)->config().eos_token_ids) {
      r.options.stop_token_ids.push_back(static_cast<int32_t>(id));
    }
    r.on_done = [&, i](absl::StatusOr<ScheduledResult> res) {
      if (!res.ok()) {
        status[i] = res.status();
        return;
      }
      out[i].tokens = res->generation.tokens;
      out[i].stop = res->generation.stop;
    };
    if (auto id = scheduler.Submit(std::move(r)); !id.ok()) return id.status();
  }
  while (scheduler.RunOnce()) {
  }
  for (const absl::Status& s : status) {
    if (!s.ok()) return s;
  }
  return out;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  return v[k];
}

}  // namespace

std::string LoadReport::Summary() const {
  return absl::StrFormat(
      "%d streams in %.2f s: %d ok, %d failed, %d lost, %d duplicated, %d mismatched, "
      "%d wrong stop; %d tokens (%.0f tok/s); time to first token p50 %.3f p90 %.3f p95 %.3f "
      "p99 %.3f max %.3f s; total p50 %.3f p90 %.3f p95 %.3f p99 %.3f max %.3f s",
      streams, wall_seconds, ok, failed, lost, duplicated, mismatched, wrong_stop, tokens,
      tokens / std::max(wall_seconds, 1e-9), ttft_p50, ttft_p90, ttft_p95, ttft_p99, ttft_max,
      total_p50, total_p90, total_p95, total_p99, total_max);
}

namespace {

// One stream's outcome as the client saw it.
struct StreamResult {
  std::vector<int32_t> tokens;
  absl::StatusOr<gv1::GenerationStats> stats = absl::UnknownError("not run");
  double ttft = -1, total = 0;
};

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::vector<std::unique_ptr<gv1::Generation::Stub>> OpenStubs(const std::string& address,
                                                              int channels) {
  std::vector<std::unique_ptr<gv1::Generation::Stub>> stubs;
  for (int c = 0; c < std::max(channels, 1); ++c) {
    grpc::ChannelArguments args;
    args.SetInt("apr.load_channel", c);  // distinct arguments: a connection each
    stubs.push_back(gv1::Generation::NewStub(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args)));
  }
  return stubs;
}

// Streams request `i` to the end, timing its first token and the whole.
void StreamOne(gv1::Generation::Stub& stub, int i, const LoadOptions& o, StreamResult& g) {
  const gv1::GenerateRequest req = LoadRequest(i, o);
  cluster::CallOptions call;
  call.timeout_seconds = o.timeout_seconds;
  // Wait for the channel's connection rather than fail fast: on a loaded CI machine one
  // channel's first connect once failed, and every stream on it with UNAVAILABLE, while
  // the other channels carried theirs. Every stream must still succeed, within its
  // deadline.
  call.on_context = [](grpc::ClientContext* c) {
    if (c != nullptr) c->set_wait_for_ready(true);
  };
  const auto start = std::chrono::steady_clock::now();
  g.stats = cluster::StreamGenerate(
      stub, req,
      [&](const gv1::TokenChunk& c) {
        if (g.ttft < 0 && c.ids_size() > 0) g.ttft = SecondsSince(start);
        g.tokens.insert(g.tokens.end(), c.ids().begin(), c.ids().end());
      },
      call);
  g.total = SecondsSince(start);
}

// Counts stream `i` into the report against its reference; `ids` finds duplicates.
void CheckStream(int i, const StreamResult& g, const Expected& want,
                 absl::flat_hash_map<std::string, int>& ids, LoadReport& r) {
  auto note = [&](std::string e) {
    if (r.errors.size() < 10) r.errors.push_back(std::move(e));
  };
  r.tokens += static_cast<int64_t>(g.tokens.size());
  if (!g.stats.ok()) {
    if (g.stats.status().code() == absl::StatusCode::kDataLoss) {
      ++r.lost;
    } else {
      ++r.failed;
    }
    note(absl::StrCat("stream ", i, ": ", g.stats.status().ToString()));
    return;
  }
  ++r.ok;
  const std::string& rid = g.stats->request_id();
  if (!absl::EndsWith(rid, absl::StrCat("/load-", i)) || ++ids[rid] > 1) {
    ++r.duplicated;
    note(absl::StrCat("stream ", i, " has request id ", rid));
  }
  if (g.stats->generated_tokens() != static_cast<int64_t>(g.tokens.size())) {
    ++r.lost;
    note(absl::StrCat("stream ", i, ": stats say ", g.stats->generated_tokens(),
                      " tokens, the stream carried ", g.tokens.size()));
  }
  if (g.tokens != want.tokens) {
    ++r.mismatched;
    note(absl::StrCat("stream ", i, ": tokens differ from the reference"));
  }
  if (g.stats->stop_reason() != ToProto(want.stop)) {
    ++r.wrong_stop;
    note(
        absl::StrCat("stream ", i, ": stop reason ", gv1::StopReason_Name(g.stats->stop_reason())));
  }
}

void FillLatencies(const std::vector<StreamResult>& got, LoadReport& r) {
  std::vector<double> ttft, total;
  for (const StreamResult& g : got) {
    if (!g.stats.ok()) continue;
    if (g.ttft >= 0) ttft.push_back(g.ttft);
    total.push_back(g.total);
  }
  r.ttft_p50 = Percentile(ttft, 0.5);
  r.ttft_p90 = Percentile(ttft, 0.9);
  r.ttft_p95 = Percentile(ttft, 0.95);
  r.ttft_p99 = Percentile(ttft, 0.99);
  r.ttft_max = Percentile(ttft, 1.0);
  r.total_p50 = Percentile(total, 0.5);
  r.total_p90 = Percentile(total, 0.9);
  r.total_p95 = Percentile(total, 0.95);
  r.total_p99 = Percentile(total, 0.99);
  r.total_max = Percentile(total, 1.0);
}

}  // namespace

absl::StatusOr<LoadReport> RunLoad(const std::string& address, const LoadOptions& o) {
  auto expected = References(o);
  if (!expected.ok()) return expected.status();
  const auto stubs = OpenStubs(address, o.channels);
  std::vector<StreamResult> got(o.streams);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  threads.reserve(o.streams);
  for (int i = 0; i < o.streams; ++i) {
    threads.emplace_back([&, i] { StreamOne(*stubs[i % stubs.size()], i, o, got[i]); });
  }
  for (auto& t : threads) t.join();

  LoadReport r;
  r.streams = o.streams;
  r.wall_seconds = SecondsSince(t0);
  absl::flat_hash_map<std::string, int> ids;
  for (int i = 0; i < o.streams; ++i) CheckStream(i, got[i], (*expected)[i], ids, r);
  FillLatencies(got, r);
  return r;
}

}  // namespace apr::reliability
