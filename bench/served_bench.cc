// served_bench: the served system end to end (issue 17 item 5). It starts a cluster config
// with the launcher library (storage nodes, worker, front end as separate processes on
// 127.0.0.1, every port 0), then for each row (prompt length x concurrent streams) opens
// that many streaming Generate calls at once and times what the clients see, next to the
// step times the worker and the front end export on /metrics.
//
//   served_bench --config=configs/one_gpu.textproto --model=/tmp/llama8b
//     --prompt_tokens=32768,131072 --streams=1,8,32 --max_tokens=64 --out=/tmp/served.md
//   bazel run -c opt //bench:served_bench -- --config=configs/local.textproto
//     --prompt_tokens=256,512 --streams=1,4 --max_tokens=8
//
// Prompts are random token ids (a fixed seed per row and stream) from the part of the
// vocabulary without the model's BOS/EOS ids, BOS first; requests are greedy with
// ignore_eos, so every stream generates exactly --max_tokens tokens (a random-weights
// model has no real tokenizer). A prompt that would leave no room for --max_tokens in the
// model's context is shortened to context - max_tokens (the table shows the length used).
//
// Definitions (times on one steady clock in this process; a stream's clock starts when its
// Generate call is issued, all of a row's calls are released together):
//   TTFT              call issued -> first token chunk received (queue + prefill + RPC);
//                     p50 is the upper median over the row's streams, max the largest.
//   tok/s per stream  (tokens - 1) / (last chunk - first chunk): the stream's decode rate.
//   total tok/s       overlap: tokens received by all streams inside the window where
//                     every stream is decoding, (latest first chunk, earliest last chunk],
//                     over the window's length ("-" when the streams never all overlap:
//                     chunked admission lets early streams finish while later prompts are
//                     still prefilled); span: every stream's tokens after its first chunk
//                     over (latest last chunk - earliest first chunk).
//   served step       worker's apr_decode_step_seconds: delta _sum / delta _count between
//                     scrapes before and after the row (mean over every decode step of the
//                     row, the ramp with a partial batch included; compute only, no RPC).
//   front-end step    the same histogram on the front end (the step as the scheduler sees
//                     it: the Step RPC included).
//   steps, fetched MB, hits, stalls: deltas of apr_worker_steps_total,
//                     apr_fetch_bytes_total, apr_prefetch_hits_total,
//                     apr_prefetch_stalls_total of the worker (rank 0 of the first group).
//
// Sizing: the worker's KV pool is max_sequences x max_context (scheduler.max_batch_size x
// the worker's --max_context), so the bench sets both from the rows: with --launch=once
// one cluster per config sized for its largest row; with --launch=per_row one per row sized
// for that row, so that rows that fit run and the others report the refusal. Nodes get
// their shard of the same KV (--storage_pool_gib); a HOST or REMOTE cache over this host's
// free RAM is refused before launching (--host_reserve_gib). Output: --log.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "bench/bench_util.h"
#include "bench/metrics_scrape.h"
#include "cluster/client.h"
#include "cluster/config.h"
#include "cluster/launcher.h"
#include "cluster/serving.h"
#include "kvstore/host_memory.h"
#include "runtime/model_config.h"
#include "runtime/model_path.h"

ABSL_FLAG(std::string, config, "configs/local.textproto",
          "cluster config(s), comma-separated (configs/one_gpu.textproto, offload_host, ...)");
ABSL_FLAG(std::string, model, "", "model folder; overrides the config's model.path");
ABSL_FLAG(std::string, bin_dir, "",
          "directory of the frontend and worker binaries (storage_node: ../kvstore/); empty: "
          "$APR_BIN_DIR, else ../cluster next to this binary");
ABSL_FLAG(std::string, placement, "",
          "GPU, HOST, REMOTE or AUTO: overrides kv_cache.placement (REMOTE needs a config with "
          "storage_nodes); empty: the config's");
ABSL_FLAG(std::string, prompt_tokens, "32768,131072", "prompt lengths (tokens, BOS included)");
ABSL_FLAG(std::string, streams, "1,8,32", "concurrent streams per row");
ABSL_FLAG(int, max_tokens, 64, "tokens generated per stream (greedy, ignore_eos)");
ABSL_FLAG(int64_t, max_context, 0,
          "the worker's --max_context (its KV pool is max_batch_size x this); 0: the launch's "
          "longest prompt + max_tokens + 64, within the model's context; -1: the model's");
ABSL_FLAG(int, max_batch_size, 0, "scheduler.max_batch_size; 0: the launch's largest stream count");
ABSL_FLAG(double, storage_pool_gib, 0,
          "pool of each storage node, GiB; 0: the KV of max_batch_size x max_context over "
          "the nodes sharing one copy of it (sharding), plus 1 GiB");
ABSL_FLAG(std::string, launch, "once",
          "once: one cluster per config, sized for the largest row; per_row: one per row, "
          "sized for it (rows that fit run although the largest would not)");
ABSL_FLAG(int, budget_tokens, 0, "kv_cache.budget_tokens override; 0: the config's");
ABSL_FLAG(int, prefill_chunk_tokens, 0,
          "scheduler.prefill_chunk_tokens override (-1: every prompt whole); 0: the config's");
ABSL_FLAG(double, max_prefill_share, 0, "scheduler.max_prefill_share override; 0: the config's");
ABSL_FLAG(double, host_reserve_gib, 8,
          "HOST and REMOTE launches whose KV pool would leave less than this much of the "
          "host's available RAM are refused here, before pinning it; negative: no check");
ABSL_FLAG(double, startup_timeout_s, 600, "launcher.startup_timeout_seconds");
ABSL_FLAG(double, timeout_s, 3600, "deadline of each Generate call");
ABSL_FLAG(uint64_t, seed, 17, "prompt seed");
ABSL_FLAG(std::string, out, "", "also write the markdown table here");
ABSL_FLAG(std::string, label, "", "a line printed above the table (machine, date, model)");
ABSL_FLAG(std::string, log, "",
          "the launched processes' output (appended); empty: served_bench.log in the temp dir");

namespace apr::bench {
namespace {

namespace fs = std::filesystem;
namespace gv1 = ::apr::generation::v1;
using cluster::ClusterConfig;
using Clock = std::chrono::steady_clock;
using Placement = cluster::v1::KvCache;

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// One row of the table: what was asked, and what was measured or why it did not run.
struct Row {
  std::string config, placement;
  int prompt = 0, streams = 0;
  std::string note;  // set: the row did not run (or partly), this says why
  double ttft_p50 = 0, ttft_max = 0, rate_median = 0, rate_min = 0;
  std::optional<double> total;  // overlap window; unset: the streams never all decoded at once
  double span = 0;              // over the whole decode phase
  double served_ms = 0, frontend_ms = 0, fetched_mb = 0, hits = 0, stalls = 0, steps = 0;
  // Remote: bytes read from each storage node during the row (worker metrics), by address.
  std::vector<std::pair<std::string, double>> node_bytes;
  bool ran = false;  // every stream produced tokens: the columns are measured
};

// What a launch is sized for.
struct Sizes {
  int max_batch = 1;
  int64_t max_context = 0;  // 0: leave the worker's default (the model's context)
};

// Ids a prompt may use: the vocabulary without BOS/EOS. Specials at the top of the
// vocabulary (Llama 3: 128000+) bound the range from above, low ones (apr-tiny, random
// models: 0, 1) from below.
struct TokenRange {
  int32_t lo = 0, hi = 0;  // [lo, hi]
};

TokenRange SafeRange(const ModelConfig& m) {
  std::vector<int64_t> special = m.bos_token_ids;
  special.insert(special.end(), m.eos_token_ids.begin(), m.eos_token_ids.end());
  TokenRange r{0, static_cast<int32_t>(m.vocab_size - 1)};
  for (int64_t s : special) {
    if (s >= m.vocab_size / 2)
      r.hi = std::min<int32_t>(r.hi, static_cast<int32_t>(s - 1));
    else
      r.lo = std::max<int32_t>(r.lo, static_cast<int32_t>(s + 1));
  }
  return r;
}

std::vector<int32_t> MakePrompt(const ModelConfig& m, const TokenRange& range, int tokens,
                                uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> pick(range.lo, range.hi);
  std::vector<int32_t> p;
  for (int64_t b : m.bos_token_ids) p.push_back(static_cast<int32_t>(b));
  while (static_cast<int>(p.size()) < tokens) p.push_back(pick(rng));
  p.resize(tokens);
  return p;
}

std::string BinDir() {
  if (std::string d = absl::GetFlag(FLAGS_bin_dir); !d.empty()) return ResolveUserPath(d);
  if (const char* d = std::getenv("APR_BIN_DIR")) return ResolveUserPath(d);
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);  // bazel-bin/bench/served_bench
  return (self.parent_path() / ".." / "cluster").lexically_normal().string();
}

std::string LogPath() {
  const std::string l = absl::GetFlag(FLAGS_log);
  return l.empty() ? (fs::temp_directory_path() / "served_bench.log").string() : ResolveUserPath(l);
}

// Points this process's stdout and stderr at the log while it lives, so that the children
// the launcher forks inherit the log (they keep writing there after it is gone).
class OutputToLog {
 public:
  explicit OutputToLog(const std::string& path) {
    std::fflush(nullptr);
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return;
    saved_out_ = dup(1);
    saved_err_ = dup(2);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
  }
  ~OutputToLog() {
    if (saved_out_ < 0) return;
    std::fflush(nullptr);
    dup2(saved_out_, 1);
    dup2(saved_err_, 2);
    close(saved_out_);
    close(saved_err_);
  }

 private:
  int saved_out_ = -1, saved_err_ = -1;
};

// The log from byte `from` on, its last `lines` lines.
std::string LogTail(const std::string& path, int64_t from, int lines) {
  std::ifstream in(path);
  in.seekg(from);
  std::stringstream ss;
  ss << in.rdbuf();
  std::vector<std::string> all = absl::StrSplit(ss.str(), '\n', absl::SkipEmpty());
  const size_t first = all.size() > static_cast<size_t>(lines) ? all.size() - lines : 0;
  return absl::StrJoin(all.begin() + first, all.end(), "\n");
}

// The front end's (or a worker's) own words when a launch fails: the last line a process
// wrote that names itself, e.g. "frontend: device cuda:0: ... does not fit ...".
std::string RefusalLine(const std::string& tail) {
  std::string found;
  for (absl::string_view l : absl::StrSplit(tail, '\n')) {
    const bool own = absl::StartsWith(l, "frontend: ") || absl::StartsWith(l, "g0/");
    if ((own || absl::StrContains(l, "rror")) && !absl::StrContains(l, "Worker API on") &&
        !absl::StrContains(l, "signal")) {
      found = std::string(l);
    }
  }
  return found;
}

std::optional<Placement::Placement> ParsePlacement(const std::string& name) {
  const std::string n = absl::AsciiStrToUpper(name);
  if (n == "GPU" || n == "DEVICE") return Placement::PLACEMENT_UNSPECIFIED;
  if (n == "HOST") return Placement::PLACEMENT_HOST;
  if (n == "REMOTE") return Placement::PLACEMENT_REMOTE;
  if (n == "AUTO") return Placement::PLACEMENT_AUTO;
  return std::nullopt;
}

std::string PlacementText(Placement::Placement p) {
  return p == Placement::PLACEMENT_HOST     ? "HOST"
         : p == Placement::PLACEMENT_REMOTE ? "REMOTE"
         : p == Placement::PLACEMENT_AUTO   ? "AUTO"
                                            : "GPU";
}

// A node's pool for the KV of `sizes` (bf16 blocks of 16 tokens per layer and KV head),
// `shards` nodes sharing one copy of it (docs/KVSTORE.md "Sharding").
int64_t PoolBytes(const ModelConfig& m, const Sizes& sizes, int shards) {
  if (double gib = absl::GetFlag(FLAGS_storage_pool_gib); gib > 0) {
    return static_cast<int64_t>(gib * (int64_t{1} << 30));
  }
  const int64_t ctx = sizes.max_context > 0 ? sizes.max_context : m.max_position_embeddings;
  const int64_t block = 2 * 16 * m.head_dim * 2;
  const int64_t blocks = (ctx / 16 + 32) * m.num_hidden_layers * m.num_key_value_heads;
  return int64_t{sizes.max_batch} * blocks * block / std::max(1, shards) + (int64_t{1} << 30);
}

// Nodes sharing one copy of the KV of the group that names `name` (its nodes over
// kv_cache.replication); 1 for a node no group names (group i, node i).
int ShardsOf(const ClusterConfig& c, const std::string& name) {
  for (const auto& g : c.worker_groups()) {
    const auto& nodes = g.storage_nodes();
    if (std::find(nodes.begin(), nodes.end(), name) == nodes.end()) continue;
    return std::max(1, nodes.size() / std::max(1, c.kv_cache().replication()));
  }
  return 1;
}

// Bytes of KV of `sizes`: K and V, bf16, every layer and KV head.
double KvBytes(const ModelConfig& m, const Sizes& sizes) {
  const int64_t ctx = sizes.max_context > 0 ? sizes.max_context : m.max_position_embeddings;
  return double(sizes.max_batch) * ctx * m.num_hidden_layers * m.num_key_value_heads * m.head_dim *
         2 * 2;
}

// An offloaded cache lives in this host's RAM (HOST: the worker's pinned pool; REMOTE: the
// storage nodes' pools, on this host too). One larger than the RAM left is refused before
// the launch: pinning it would end in the OOM killer, not in an error message.
absl::Status CheckHostRam(const ClusterConfig& c, const ModelConfig& m, const Sizes& sizes) {
  const auto p = c.kv_cache().placement();
  const double reserve = absl::GetFlag(FLAGS_host_reserve_gib) * (int64_t{1} << 30);
  if ((p != Placement::PLACEMENT_HOST && p != Placement::PLACEMENT_REMOTE) || reserve < 0) {
    return absl::OkStatus();
  }
  double need = 0;
  if (p == Placement::PLACEMENT_HOST) need = KvBytes(m, sizes);
  for (const auto& n : c.storage_nodes())
    need += p == Placement::PLACEMENT_REMOTE ? n.pool_bytes() : 0;
  const double avail = static_cast<double>(kvstore::HostMemAvailableBytes());
  if (avail < 0 || need + reserve <= avail) return absl::OkStatus();
  constexpr double kGiB = 1 << 30;
  return absl::ResourceExhaustedError(absl::StrFormat(
      "not launched: %s KV of %d sequences x %lld tokens needs %.1f GiB of this host's RAM; "
      "%.1f GiB available, %.0f GiB kept in reserve (--host_reserve_gib)",
      PlacementText(p), sizes.max_batch,
      static_cast<long long>(sizes.max_context > 0 ? sizes.max_context : m.max_position_embeddings),
      need / kGiB, avail / kGiB, reserve / kGiB));
}

// The config with every port 0 and the bench's overrides and sizes applied.
absl::StatusOr<ClusterConfig> PrepareConfig(ClusterConfig c, const std::string& model_dir,
                                            const ModelConfig& m, const Sizes& sizes) {
  c.mutable_model()->set_path(model_dir);
  c.mutable_frontend()->mutable_grpc()->set_port(0);
  c.mutable_frontend()->set_metrics_port(0);
  if (c.frontend().has_openai()) c.mutable_frontend()->mutable_openai()->set_port(0);
  for (auto& g : *c.mutable_worker_groups()) {
    for (auto& r : *g.mutable_ranks()) {
      r.mutable_grpc()->set_port(0);
      r.set_metrics_port(0);
      auto* flags = r.mutable_extra_flags();
      flags->erase(
          std::remove_if(flags->begin(), flags->end(),
                         [](const std::string& f) { return absl::StartsWith(f, "--max_context"); }),
          flags->end());
      if (sizes.max_context > 0)
        r.add_extra_flags(absl::StrCat("--max_context=", sizes.max_context));
    }
  }
  if (const std::string p = absl::GetFlag(FLAGS_placement); !p.empty()) {
    const auto placement = ParsePlacement(p);
    if (!placement) return absl::InvalidArgumentError("--placement: GPU, HOST, REMOTE or AUTO");
    c.mutable_kv_cache()->set_placement(*placement);
  }
  if (c.kv_cache().placement() == Placement::PLACEMENT_REMOTE && c.storage_nodes_size() == 0) {
    return absl::InvalidArgumentError(
        "placement REMOTE: the config has no storage_nodes (use configs/offload_remote.textproto "
        "or add one)");
  }
  for (auto& n : *c.mutable_storage_nodes()) {
    n.mutable_grpc()->set_port(0);
    n.set_pool_bytes(PoolBytes(m, sizes, ShardsOf(c, n.name())));
  }
  if (int b = absl::GetFlag(FLAGS_budget_tokens); b > 0) c.mutable_kv_cache()->set_budget_tokens(b);
  c.mutable_scheduler()->set_max_batch_size(sizes.max_batch);
  if (int n = absl::GetFlag(FLAGS_prefill_chunk_tokens); n != 0) {
    c.mutable_scheduler()->set_prefill_chunk_tokens(n);
  }
  if (double x = absl::GetFlag(FLAGS_max_prefill_share); x > 0) {
    c.mutable_scheduler()->set_max_prefill_share(x);
  }
  auto* limits = c.mutable_frontend()->mutable_limits();
  limits->set_max_streams_per_client(
      std::max(limits->max_streams_per_client(), sizes.max_batch + 16));
  c.mutable_launcher()->set_startup_timeout_seconds(absl::GetFlag(FLAGS_startup_timeout_s));
  return c;
}

// A launched cluster: the launcher, the front end's address and both metrics ports.
struct Cluster {
  std::unique_ptr<cluster::Launcher> launcher;
  std::string run_dir, address;
  int worker_metrics = 0, frontend_metrics = 0;
};

// Starts `config`; on failure the error carries the refusal line and the log's tail went
// to stderr.
absl::StatusOr<std::unique_ptr<Cluster>> Launch(const ClusterConfig& config,
                                                const std::string& name) {
  auto c = std::make_unique<Cluster>();
  c->run_dir =
      (fs::temp_directory_path() / absl::StrCat("served_bench-", getpid(), "-", name)).string();
  fs::remove_all(c->run_dir);
  fs::create_directories(c->run_dir);
  cluster::LauncherOptions lo;
  lo.bin_dir = BinDir();
  lo.run_dir = c->run_dir;
  c->launcher = std::make_unique<cluster::Launcher>(config, lo);
  const std::string log = LogPath();
  std::error_code ec;
  const int64_t from = fs::exists(log) ? static_cast<int64_t>(fs::file_size(log, ec)) : 0;
  const auto t0 = Clock::now();
  std::fprintf(stderr, "launching %s (max_batch_size %d) ...\n", name.c_str(),
               config.scheduler().max_batch_size());
  absl::Status started;
  {
    OutputToLog redirect(log);
    std::fprintf(stderr, "==== served_bench: launching %s\n", name.c_str());
    started = c->launcher->Start();
  }
  if (!started.ok()) {
    const std::string tail = LogTail(log, from, 30);
    std::fprintf(stderr, "launch of %s failed: %s\n--- log tail (%s) ---\n%s\n---\n", name.c_str(),
                 started.ToString().c_str(), log.c_str(), tail.c_str());
    const std::string why = RefusalLine(tail);
    const std::string what =
        absl::StrReplaceAll(started.message(), {{" (its output is above)", ""}});
    return absl::Status(started.code(), why.empty() ? what : absl::StrCat(what, ": ", why));
  }
  c->address = c->launcher->frontend_address();
  c->frontend_metrics = c->launcher->metrics_port();
  const std::string group = config.worker_groups(0).name();
  auto ports =
      cluster::ReadReadyFile((fs::path(c->run_dir) / ("worker-" + group + "-0.ready")).string());
  if (ports.ok()) c->worker_metrics = (*ports)["metrics_port"];
  std::fprintf(stderr, "launched %s in %.1f s: front end %s, worker metrics port %d\n",
               name.c_str(), Since(t0), c->address.c_str(), c->worker_metrics);
  return c;
}

void Shutdown(std::unique_ptr<Cluster>& c) {
  if (c == nullptr) return;
  if (absl::Status s = c->launcher->Stop(); !s.ok()) {
    std::fprintf(stderr, "stopping the cluster: %s\n", s.ToString().c_str());
  }
  std::error_code ec;
  fs::remove_all(c->run_dir, ec);
  c.reset();
}

struct Stream {
  double issued = 0;                           // seconds since the row's start
  std::vector<std::pair<double, int>> chunks;  // arrival (s since the row's start), ids
  int tokens = 0;
  absl::StatusOr<gv1::GenerationStats> stats = absl::UnknownError("not run");
};

// Runs every prompt as one streaming call, all released at once.
std::vector<Stream> RunStreams(const std::string& address,
                               const std::vector<std::vector<int32_t>>& prompts) {
  std::vector<Stream> out(prompts.size());
  absl::Notification go;
  Clock::time_point t0;
  std::vector<std::thread> threads;
  for (size_t i = 0; i < prompts.size(); ++i) {
    threads.emplace_back([&, i] {
      auto stub = cluster::ConnectGeneration(address);
      gv1::GenerateRequest req;
      req.mutable_token_ids()->mutable_ids()->Add(prompts[i].begin(), prompts[i].end());
      req.set_max_tokens(absl::GetFlag(FLAGS_max_tokens));
      req.set_ignore_eos(true);
      req.mutable_sampling()->set_temperature(0);
      req.set_request_id(absl::StrCat("bench-", i));
      go.WaitForNotification();
      Stream& s = out[i];
      s.issued = Since(t0);
      s.stats = cluster::StreamGenerate(
          *stub, req,
          [&](const gv1::TokenChunk& c) {
            if (c.ids_size() == 0) return;
            s.chunks.emplace_back(Since(t0), c.ids_size());
            s.tokens += c.ids_size();
          },
          absl::GetFlag(FLAGS_timeout_s));
    });
  }
  // The stubs connect while the threads start; a moment later every call goes at once.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  t0 = Clock::now();
  go.Notify();
  for (auto& t : threads) t.join();
  return out;
}

// Fills the client-side columns of `row` from the streams (see the top comment).
void Summarize(const std::vector<Stream>& streams, Row* row) {
  std::vector<double> ttft, rate;
  double window_start = 0, window_end = 1e300, earliest = 1e300, latest = 0;
  int64_t after_first = 0;
  for (const Stream& s : streams) {
    const double first = s.chunks.front().first, last = s.chunks.back().first;
    ttft.push_back(first - s.issued);
    if (s.tokens > 1 && last > first) rate.push_back((s.tokens - 1) / (last - first));
    window_start = std::max(window_start, first);
    window_end = std::min(window_end, last);
    earliest = std::min(earliest, first);
    latest = std::max(latest, last);
    after_first += s.tokens - s.chunks.front().second;
  }
  if (latest > earliest) row->span = after_first / (latest - earliest);
  row->ttft_p50 = Median(ttft);
  row->ttft_max = *std::max_element(ttft.begin(), ttft.end());
  row->rate_median = Median(rate);
  row->rate_min = rate.empty() ? 0 : *std::min_element(rate.begin(), rate.end());
  if (window_end > window_start) {
    int64_t tokens = 0;
    for (const Stream& s : streams) {
      for (const auto& [t, n] : s.chunks) tokens += (t > window_start && t <= window_end) ? n : 0;
    }
    row->total = tokens / (window_end - window_start);
  }
}

// The first failure of the row's streams, or a note on streams that stopped early; empty
// when every stream generated max_tokens tokens.
std::string Problems(const std::vector<Stream>& streams) {
  int failed = 0, short_streams = 0;
  std::string first;
  for (const Stream& s : streams) {
    if (!s.stats.ok() || s.chunks.empty()) {
      if (failed++ == 0) {
        first = s.stats.ok() ? "no tokens" : std::string(s.stats.status().message());
      }
    } else if (s.tokens < absl::GetFlag(FLAGS_max_tokens)) {
      ++short_streams;
    }
  }
  if (failed > 0) return absl::StrCat(failed, " of ", streams.size(), " streams failed: ", first);
  if (short_streams > 0) {
    return absl::StrCat(short_streams, " streams stopped before max_tokens (counted as received)");
  }
  return "";
}

Row RunRow(const Cluster& c, const ModelConfig& m, const TokenRange& range, Row row) {
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < row.streams; ++i) {
    const uint64_t seed = absl::GetFlag(FLAGS_seed) * 1000003 + row.prompt * 131 + i;
    prompts.push_back(MakePrompt(m, range, row.prompt, seed));
  }
  const Metrics w0 = Scrape(c.worker_metrics), f0 = Scrape(c.frontend_metrics);
  const std::vector<Stream> streams = RunStreams(c.address, prompts);
  const Metrics w1 = Scrape(c.worker_metrics), f1 = Scrape(c.frontend_metrics);
  row.note = Problems(streams);
  for (const Stream& s : streams) {
    if (!s.stats.ok() || s.chunks.empty()) return row;
  }
  // Unset placement is the worker's own memory: say which.
  if (row.placement == "GPU" && streams[0].stats->device() == "cpu") row.placement = "CPU";
  Summarize(streams, &row);
  row.ran = true;
  row.served_ms = MeanMs(w0, w1, "apr_decode_step_seconds");
  row.frontend_ms = MeanMs(f0, f1, "apr_decode_step_seconds");
  row.steps = Delta(w0, w1, "apr_worker_steps_total");
  row.fetched_mb = Delta(w0, w1, "apr_fetch_bytes_total") / 1e6;
  row.hits = Delta(w0, w1, "apr_prefetch_hits_total");
  row.stalls = Delta(w0, w1, "apr_prefetch_stalls_total");
  row.node_bytes = LabelledDeltas(w0, w1, "apr_storage_node_fetch_bytes_total");
  std::vector<double> queue, prefill;
  for (const Stream& s : streams) {
    queue.push_back(s.stats->queue_seconds());
    prefill.push_back(s.stats->prefill_seconds());
  }
  std::fprintf(stderr,
               "  %s: TTFT p50 %.3f s max %.3f s (front end: queue p50 %.3f s, prefill p50 "
               "%.3f s); %.1f tok/s per stream (min %.1f); total %s / %.1f tok/s; step %.3f ms "
               "(front end %.3f ms) x %.0f; device %s\n",
               row.config.c_str(), row.ttft_p50, row.ttft_max, Median(queue), Median(prefill),
               row.rate_median, row.rate_min,
               row.total ? absl::StrFormat("%.1f", *row.total).c_str() : "-", row.span,
               row.served_ms, row.frontend_ms, row.steps, streams[0].stats->device().c_str());
  return row;
}

std::string Cell(std::string s) {
  absl::StrReplaceAll({{"|", "/"}, {"\n", " "}}, &s);
  return s.size() > 400 ? s.substr(0, 400) + "..." : s;
}

// Fetch rate while decoding (GB/s over the row's decode steps): total, then per storage
// node ("-" for a resident cache; no per-node part for a host pool).
std::string FetchRates(const Row& r) {
  const double seconds = r.steps * r.served_ms * 1e-3;
  if (seconds <= 0 || r.fetched_mb <= 0) return "-";
  std::string out = absl::StrFormat("%.2f", r.fetched_mb * 1e-3 / seconds);
  for (size_t i = 0; i < r.node_bytes.size(); ++i) {
    absl::StrAppend(&out, i == 0 ? "; " : " + ",
                    absl::StrFormat("%.2f", r.node_bytes[i].second * 1e-9 / seconds));
  }
  return out;
}

std::string Table(const std::vector<Row>& rows) {
  std::string t =
      "| config | placement | prompt tokens | streams | TTFT p50 / max (s) | tok/s per stream "
      "median / min | total tok/s overlap / span | served step (ms) | front-end step (ms) | "
      "steps | fetched MB | fetch GB/s; per node | hits | stalls |\n"
      "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
      "| ---: |\n";
  for (const Row& r : rows) {
    const std::string head =
        absl::StrFormat("| %s | %s | %d | %d |", r.config, r.placement, r.prompt, r.streams);
    if (!r.ran) {
      absl::StrAppend(&t, head, " ", Cell(r.note), " | | | | | | | | | |\n");
      continue;
    }
    absl::StrAppend(
        &t, head,
        absl::StrFormat(" %.3f / %.3f | %.1f / %.1f | %s / %.1f | %.3f | %.3f | %.0f | %.1f | "
                        "%s | %.0f | %.0f |\n",
                        r.ttft_p50, r.ttft_max, r.rate_median, r.rate_min,
                        r.total ? absl::StrFormat("%.1f", *r.total) : "-", r.span, r.served_ms,
                        r.frontend_ms, r.steps, r.fetched_mb, FetchRates(r), r.hits, r.stalls));
    if (!r.note.empty())
      absl::StrAppend(&t, "|  | note: ", Cell(r.note), " | | | | | | | | | | | | |\n");
  }
  return t;
}

template <typename T>
std::string Override(const absl::Flag<T>& flag) {
  const T v = absl::GetFlag(flag);
  return v == 0 ? "as configured" : absl::StrCat(v);
}

// What to run, and the rows so far.
struct Plan {
  std::vector<int> prompts, streams;
  int max_tokens = 0, total_rows = 0, row_number = 0;
  std::vector<Row> rows;

  std::string Markdown() const {
    std::string t;
    if (const std::string label = absl::GetFlag(FLAGS_label); !label.empty()) {
      t = absl::StrCat(label, "\n\n");
    }
    absl::StrAppend(
        &t,
        absl::StrFormat("max_tokens %d per stream, greedy, ignore_eos; launch %s; "
                        "prefill_chunk_tokens %s, max_prefill_share %s\n\n",
                        max_tokens, absl::GetFlag(FLAGS_launch),
                        Override(FLAGS_prefill_chunk_tokens), Override(FLAGS_max_prefill_share)),
        Table(rows));
    return t;
  }
  // Rewrites --out after every row: a run stopped at its time limit keeps what it finished.
  void Add(Row row) {
    rows.push_back(std::move(row));
    if (const std::string out = absl::GetFlag(FLAGS_out); !out.empty()) {
      std::ofstream(ResolveUserPath(out)) << Markdown();
    }
  }
};

// The prompt lengths as run: shortened where context - max_tokens is less.
std::vector<int> FitPrompts(const std::vector<int>& asked, const ModelConfig& m, int max_tokens) {
  std::vector<int> out;
  for (int p : asked) {
    const int fit = static_cast<int>(std::min<int64_t>(p, m.max_position_embeddings - max_tokens));
    if (fit != p) {
      std::fprintf(stderr,
                   "prompt %d + max_tokens %d exceeds the model's context %lld: %d tokens\n", p,
                   max_tokens, static_cast<long long>(m.max_position_embeddings), fit);
    }
    out.push_back(fit);
  }
  return out;
}

Sizes SizesFor(int max_prompt, int max_streams, int max_tokens, const ModelConfig& m) {
  Sizes s;
  s.max_batch =
      absl::GetFlag(FLAGS_max_batch_size) > 0 ? absl::GetFlag(FLAGS_max_batch_size) : max_streams;
  if (s.max_batch < max_streams) {
    std::fprintf(stderr, "--max_batch_size %d < %d streams: the rest wait in the queue\n",
                 s.max_batch, max_streams);
  }
  const int64_t flag = absl::GetFlag(FLAGS_max_context);
  const int64_t fit = std::min<int64_t>(max_prompt + max_tokens + 64, m.max_position_embeddings);
  s.max_context = flag > 0 ? flag : flag == 0 ? fit : 0;
  return s;
}

// Every row of one config: one launch (--launch=once) or one per row.
void RunConfig(const std::string& path, Plan& plan) {
  const std::string name = fs::path(path).stem().string();
  auto add_failed = [&](const std::string& placement, const std::string& why) {
    std::fprintf(stderr, "config %s: %s\n", name.c_str(), why.c_str());
    for (int p : plan.prompts)
      for (int s : plan.streams) plan.Add(Row{name, placement, p, s, why});
    plan.row_number += static_cast<int>(plan.prompts.size() * plan.streams.size());
  };
  auto config = cluster::LoadConfig(ResolveUserPath(path));
  if (!config.ok()) return add_failed("?", std::string(config.status().message()));
  const std::string model_dir =
      fs::absolute(ResolveModelDir(absl::GetFlag(FLAGS_model).empty() ? config->model().path()
                                                                      : absl::GetFlag(FLAGS_model)))
          .lexically_normal()
          .string();
  auto model = LoadModelConfig(model_dir + "/config.json");
  if (!model.ok()) return add_failed("?", std::string(model.status().message()));
  const TokenRange range = SafeRange(*model);
  const std::vector<int> prompts = FitPrompts(plan.prompts, *model, plan.max_tokens);
  const int max_p = *std::max_element(prompts.begin(), prompts.end());
  const int max_s = *std::max_element(plan.streams.begin(), plan.streams.end());
  const bool per_row = absl::GetFlag(FLAGS_launch) == "per_row";
  std::unique_ptr<Cluster> cluster;
  absl::Status launched = absl::OkStatus();
  auto launch = [&](const Sizes& sizes) {
    Shutdown(cluster);
    auto c = PrepareConfig(*config, model_dir, *model, sizes);
    if (!c.ok()) return c.status();
    if (absl::Status ram = CheckHostRam(*c, *model, sizes); !ram.ok()) return ram;
    auto l = Launch(*c, name);
    if (!l.ok()) return l.status();
    cluster = *std::move(l);
    return absl::OkStatus();
  };
  auto prepared = PrepareConfig(*config, model_dir, *model, Sizes{max_s, 0});
  if (!prepared.ok()) {
    return add_failed(absl::AsciiStrToUpper(absl::GetFlag(FLAGS_placement)),
                      std::string(prepared.status().message()));
  }
  const std::string placement = PlacementText(prepared->kv_cache().placement());
  std::fprintf(stderr,
               "config %s: model %s (vocab %lld, context %lld), prompt ids in [%d, %d]; "
               "prefill_chunk_tokens %d, max_prefill_share %.2f, budget_tokens %d\n",
               name.c_str(), model_dir.c_str(), static_cast<long long>(model->vocab_size),
               static_cast<long long>(model->max_position_embeddings), range.lo, range.hi,
               prepared->scheduler().prefill_chunk_tokens(),
               prepared->scheduler().max_prefill_share(), prepared->kv_cache().budget_tokens());
  if (!per_row) launched = launch(SizesFor(max_p, max_s, plan.max_tokens, *model));
  for (int p : prompts) {
    for (int s : plan.streams) {
      Row row{name, placement, p, s};
      std::fprintf(stderr, "row %d/%d: %s, %d tokens x %d streams ...\n", ++plan.row_number,
                   plan.total_rows, name.c_str(), p, s);
      if (per_row) launched = launch(SizesFor(p, s, plan.max_tokens, *model));
      if (!launched.ok()) {
        row.note = absl::IsResourceExhausted(launched)
                       ? std::string(launched.message())
                       : absl::StrCat("launch failed: ", launched.message());
        std::fprintf(stderr, "  %s\n", row.note.c_str());
        plan.Add(row);
        continue;
      }
      plan.Add(RunRow(*cluster, *model, range, row));
      if (!plan.rows.back().note.empty()) {
        std::fprintf(stderr, "  %s\n", plan.rows.back().note.c_str());
      }
    }
  }
  Shutdown(cluster);
}

int Main() {
  Plan plan;
  plan.prompts = PositiveInts("prompt_tokens", absl::GetFlag(FLAGS_prompt_tokens));
  plan.streams = PositiveInts("streams", absl::GetFlag(FLAGS_streams));
  plan.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  const std::vector<std::string> configs =
      absl::StrSplit(absl::GetFlag(FLAGS_config), ',', absl::SkipEmpty());
  const std::string launch = absl::GetFlag(FLAGS_launch);
  if (plan.prompts.empty() || plan.streams.empty() || configs.empty() || plan.max_tokens < 2 ||
      (launch != "once" && launch != "per_row")) {
    std::fprintf(stderr,
                 "served_bench: need --config, --prompt_tokens, --streams, --max_tokens >= 2 and "
                 "--launch=once|per_row\n");
    return 2;
  }
  std::fprintf(stderr, "served_bench: binaries %s, processes' output in %s\n", BinDir().c_str(),
               LogPath().c_str());
  plan.total_rows = static_cast<int>(configs.size() * plan.prompts.size() * plan.streams.size());
  for (const std::string& c : configs) RunConfig(c, plan);
  std::fflush(stderr);
  std::printf("\n%s", plan.Markdown().c_str());
  return 0;
}

}  // namespace
}  // namespace apr::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return apr::bench::Main();
}
