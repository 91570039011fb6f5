#include "bench/offload_rows.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "backends/cuda/block_rules.h"
#include "backends/cuda/cuda_decoder.h"
#include "backends/cuda/cuda_decoder_bench_peer.h"
#include "backends/cuda/device_buffer.h"
#include "backends/cuda/fill.h"
#include "backends/cuda/predictor/predictor_weights.h"
#include "bench/bench_util.h"
#include "kvstore/client/remote_tier.h"
#include "kvstore/cuda/gather_blocks.h"
#include "kvstore/testing/storage_node_process.h"

ABSL_FLAG(std::string, offload_contexts, "32768,131072", "offload rows: contexts");
ABSL_FLAG(std::string, offload_batches, "1,8", "offload rows: batch sizes");
ABSL_FLAG(std::string, offload_modes, "c,b,a,r,e",
          "offload rows: c (sparse resident), b (sparse offload, graphs), r (b without block "
          "reuse: every predicted block fetched every step), e (b eager, per-layer waits; "
          "first context and batch only), a (full offload)");
ABSL_FLAG(int, offload_steps, 20, "offload rows: timed steps (b, c)");
ABSL_FLAG(int, offload_warmup, 3, "offload rows: untimed steps first (b, c)");
ABSL_FLAG(int, full_steps, 3, "offload rows: timed steps of (a)");
ABSL_FLAG(int, offload_budget, 1024, "offload rows: sparse budget (tokens per KV head)");
ABSL_FLAG(int, offload_calibration, 5, "offload rows: calibration_step (key summary)");
ABSL_FLAG(double, host_pool_gib, 33, "offload rows: the local tier's pinned pool, GiB");
ABSL_FLAG(std::string, storage_node, "", "storage_node binary: also run (b) remote");
ABSL_FLAG(std::string, remote_tls, "sm", "UCX transports for the remote run (same host)");
ABSL_FLAG(std::string, remote_contexts, "32768", "remote run: contexts");
ABSL_FLAG(std::string, remote_batches, "1", "remote run: batch sizes");
ABSL_FLAG(int, debug_fill_byte, -1,
          "offload rows: fill the decoders' buffers with this byte at creation (testing: the "
          "lists hash printed per row must not change)");
ABSL_FLAG(bool, gather_sweep, false,
          "offload rows: also time the fetch kernel over grids, launch sizes and source "
          "layouts");
ABSL_FLAG(std::string, offload_ablations, "",
          "offload rows: extra (b) rows per context and batch, ';'-separated, each a "
          "','-separated list of group=N (predict_group_layers), ctas=N (fetch_ctas); "
          "\"a:\" first makes an (a) row, e.g. \"group=1,ctas=1056;a:ctas=1056\"");

namespace apr::cuda {
namespace {

using bench::Llama31_8B;
using bench::Median;
using bench::PositiveInts;

constexpr int64_t kBlockBytes = 2 * 16 * 128 * 2;

struct Result {
  int ctx = 0, batch = 0;
  std::string mode;  // "a", "b", ...
  std::string label;
  double wall_ms = 0;    // mean wall time per step (host loop, synchronised each step)
  double device_ms = 0;  // median device time per step (events around the step)
  double fetched_mb = 0, hits_pct = -1, stalls_per_step = 0, waits_per_step = 0;
  double fetch_gbs = 0;  // fetched bytes per step / step time
  double host_stall_ms = 0;
  // Mean wall time of the same steps as the served worker takes them: DecodeBatch (the
  // logits copied to a host vector) and a greedy pick per row, after the timed steps.
  double served_like_ms = 0;
  // FNV-1a of the last step's block lists of layers 0, L/2 and L-1: rows over the same
  // data that select the same blocks print the same value (a timing-dependent selection
  // would show here).
  uint64_t lists_hash = 0;
  std::string note;
};

uint64_t ListsHash(CudaDecoder& d) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](int64_t v) {
    h ^= static_cast<uint64_t>(v);
    h *= 1099511628211ull;
  };
  const int L = d.config().num_hidden_layers;
  for (int l : {0, L / 2, L - 1}) {
    auto lists = d.LastBlockLists(l);
    if (!lists.ok()) return 0;
    for (const auto& per_seq : *lists)
      for (const CudaDecoder::BlockList& list : per_seq)
        for (const auto& [block, first] : list) mix(int64_t{block} * 65536 + first);
  }
  return h;
}

#define RETURN_IF_ERR(expr)                   \
  do {                                        \
    if (absl::Status _s = (expr); !_s.ok()) { \
      return _s;                              \
    }                                         \
  } while (0)

// The worker's step for greedy streams (runtime/step_engine.cc) minus its RPC: the picks
// made on the device, one id per row to the host, no logits. Its difference to the timed
// step (which copies every row's logits) is the host's share of the served step.
absl::Status TimeServedLikeSteps(CudaDecoder& d, std::vector<Sequence*>& seqs,
                                 const std::vector<int32_t>& tokens, int steps, Result* r) {
  std::vector<int32_t> picks;
  std::vector<float> no_logits;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) {
    RETURN_IF_ERR(d.DecodeBatchArgMax(seqs, tokens, /*need_logits=*/false, &picks, &no_logits));
  }
  const auto t1 = std::chrono::steady_clock::now();
  r->served_like_ms = std::chrono::duration<double, std::milli>(t1 - t0).count() / steps;
  return absl::OkStatus();
}

// Times `steps` decode steps after `warmup`; fills the offload statistics' deltas.
absl::Status TimeRow(CudaDecoder& d, std::vector<Sequence*>& seqs, int warmup, int steps,
                     Result* r) {
  std::vector<int32_t> tokens(seqs.size());
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(1000 + 7 * i);
  for (int i = 0; i < warmup; ++i) {
    RETURN_IF_ERR(d.DecodeStepAsync(seqs, tokens));
    RETURN_IF_ERR(d.Synchronize());
  }
  std::vector<cudaEvent_t> ev(2 * steps);
  for (cudaEvent_t& e : ev) BENCH_CHECK_CUDA(cudaEventCreate(&e));
  const OffloadStats s0 = d.offload_stats();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) {
    RETURN_IF_ERR(d.DecodeStepAsync(seqs, tokens, ev[2 * i], ev[2 * i + 1]));
    RETURN_IF_ERR(d.Synchronize());
  }
  const auto t1 = std::chrono::steady_clock::now();
  const OffloadStats s1 = d.offload_stats();
  std::vector<double> dev;
  for (int i = 0; i < steps; ++i) {
    float ms;
    BENCH_CHECK_CUDA(cudaEventElapsedTime(&ms, ev[2 * i], ev[2 * i + 1]));
    dev.push_back(ms);
  }
  for (cudaEvent_t e : ev) cudaEventDestroy(e);
  r->wall_ms = std::chrono::duration<double, std::milli>(t1 - t0).count() / steps;
  r->device_ms = Median(dev);
  const double fetched = double(s1.bytes_fetched - s0.bytes_fetched) / steps;
  r->fetched_mb = fetched / 1e6;
  r->fetch_gbs = fetched / (r->wall_ms * 1e6);
  const int64_t pred = s1.predicted_blocks - s0.predicted_blocks;
  if (pred > 0) r->hits_pct = 100.0 * double(s1.prefetch_hits - s0.prefetch_hits) / pred;
  r->stalls_per_step = double(s1.prefetch_stalls - s0.prefetch_stalls) / steps;
  r->waits_per_step = double(s1.prefetch_waits - s0.prefetch_waits) / steps;
  r->host_stall_ms = (s1.remote_host_stall_seconds - s0.remote_host_stall_seconds) * 1e3 / steps;
  return TimeServedLikeSteps(d, seqs, tokens, steps, r);
}

int SmCount() {
  int sms = 0;
  BENCH_CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  return sms;
}

// A transfer rate, GB/s, over five timed rounds: the best round and the median one (the
// host link is shared with other tenants' traffic, so single rounds vary).
struct Rate {
  double best = 0, median = 0;
};

// Times `round` (enqueues one round of `bytes` on the default stream) five times.
template <typename Round>
Rate TimeRounds(int64_t bytes, Round round) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<double> gbs;
  for (int i = 0; i < 5; ++i) {
    cudaEventRecord(a);
    round();
    cudaEventRecord(b);
    BENCH_CHECK_CUDA(cudaEventSynchronize(b));
    float ms;
    cudaEventElapsedTime(&ms, a, b);
    gbs.push_back(bytes / (ms * 1e-3) / 1e9);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return {*std::max_element(gbs.begin(), gbs.end()), Median(gbs)};
}

// The link: a contiguous 1 GiB copy from the pinned pool.
Rate LinkGbs(const LocalKvTier& tier) {
  const int64_t bytes = int64_t{1} << 30;
  auto dst = DeviceBuffer<char>::Allocate(bytes);
  BENCH_CHECK_OK(dst.status());
  return TimeRounds(bytes, [&] {
    BENCH_CHECK_CUDA(
        cudaMemcpyAsync(dst->get(), tier.store->base(), bytes, cudaMemcpyHostToDevice));
  });
}

// The decoder's fetch kernel (device-side count) from the mapped pool: n tier slots into n
// random GPU slots per launch, as one layer's fetch, launches of at least 1 GiB a round.
// Sources: random over the pool, or with `sequential`, runs of consecutive slots. `grid`:
// the launch's CTAs (0: the decoder's default).
Rate GatherGbs(const LocalKvTier& tier, int n, int grid = 0, bool sequential = false) {
  const int64_t src_blocks = tier.store->capacity_blocks();
  const int64_t dst_blocks = std::max<int64_t>(2 * n, 65536);
  auto dst = DeviceBuffer<char>::Allocate(dst_blocks * kBlockBytes);
  auto idx = DeviceBuffer<uint32_t>::Allocate(int64_t{2} * n * 8 + 1);
  BENCH_CHECK_OK(dst.status());
  BENCH_CHECK_OK(idx.status());
  std::mt19937 rng(n);
  std::vector<uint32_t> h(int64_t{2} * n * 8 + 1);
  for (int j = 0; j < 8; ++j) {
    const int64_t first = rng() % std::max<int64_t>(1, src_blocks - n);
    for (int i = 0; i < n; ++i) {
      h[int64_t{j} * 2 * n + i] =
          static_cast<uint32_t>(sequential ? (first + i) % src_blocks : rng() % src_blocks);
      h[int64_t{j} * 2 * n + n + i] = rng() % dst_blocks;
    }
  }
  h.back() = static_cast<uint32_t>(n);
  BENCH_CHECK_CUDA(cudaMemcpy(idx->get(), h.data(), h.size() * 4, cudaMemcpyHostToDevice));
  const auto* count = reinterpret_cast<const int32_t*>(idx->get() + h.size() - 1);
  if (grid <= 0) grid = SmCount();  // the decoder's default (OffloadOptions::fetch_ctas)
  int r = 0;
  auto launch = [&] {
    const uint32_t* e = idx->get() + (r++ % 8) * int64_t{2} * n;
    BENCH_CHECK_CUDA(kvstore::LaunchGatherBlocksCounted(
        tier.mapped->device_pointer(), e, dst->get(), e + n, count, n, kBlockBytes, grid, nullptr));
  };
  launch();
  const int reps = std::max(4, static_cast<int>((int64_t{1} << 30) / (int64_t{n} * kBlockBytes)));
  return TimeRounds(int64_t{reps} * n * kBlockBytes, [&] {
    for (int i = 0; i < reps; ++i) launch();
  });
}

// --gather_sweep: the fetch kernel's rate against its grid, the launch size and the
// sources' layout.
std::string GatherSweep(const LocalKvTier& tier, const Rate& link) {
  std::string t =
      "\n| gather sweep: sources | blocks per launch | CTAs | GB/s best of 5 | median | best of "
      "link | median of link |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  for (bool sequential : {false, true}) {
    for (int n : {448, 3584, 16384}) {
      for (int grid : {66, 132, 264, 528, 1056}) {
        if (grid > n) continue;
        const Rate g = GatherGbs(tier, n, grid, sequential);
        t += absl::StrFormat("| %s | %d | %d | %.1f | %.1f | %.0f%% | %.0f%% |\n",
                             sequential ? "consecutive slots" : "random slots", n, grid, g.best,
                             g.median, 100 * g.best / link.best, 100 * g.median / link.median);
      }
    }
  }
  std::printf("%s", t.c_str());
  std::fflush(stdout);
  return t;
}

// --offload_ablations: "group=1,ctas=1056;a:ctas=1056" -> labelled option sets (the
// defaults with those fields changed) for (b) rows, or (a) rows after "a:". A bad entry exits: a
// silently dropped row would be a wrong table.
struct Ablation {
  std::string name;
  char mode = 'b';  // "a:" before the list: an (a) row
  OffloadOptions options;
};

std::vector<Ablation> ParseAblations(const std::string& spec) {
  std::vector<Ablation> out;
  for (absl::string_view row : absl::StrSplit(spec, ';', absl::SkipEmpty())) {
    Ablation ab;
    ab.name = std::string(row);
    if (absl::ConsumePrefix(&row, "a:")) ab.mode = 'a';
    OffloadOptions& o = ab.options;
    for (absl::string_view kv : absl::StrSplit(row, ',', absl::SkipEmpty())) {
      const std::vector<std::string> p = absl::StrSplit(kv, '=');
      int v = 0;
      if (p.size() != 2 || !absl::SimpleAtoi(p[1], &v) || v < 0) {
        std::fprintf(stderr, "--offload_ablations: bad entry '%s' (want key=N)\n",
                     std::string(kv).c_str());
        std::exit(2);
      }
      if (p[0] == "group" && v >= 1) {
        o.predict_group_layers = v;
      } else if (p[0] == "ctas") {
        o.fetch_ctas = v;
      } else {
        std::fprintf(stderr, "--offload_ablations: unknown key or value '%s'\n",
                     std::string(kv).c_str());
        std::exit(2);
      }
    }
    out.push_back(std::move(ab));
  }
  return out;
}

// The table of `rows` so far, after `head` (the link and gather lines).
std::string Markdown(const std::string& head, const std::vector<Result>& rows, double link,
                     int budget, int steps) {
  auto find = [&rows](int ctx, int batch, const std::string& mode) -> const Result* {
    for (const Result& r : rows)
      if (r.ctx == ctx && r.batch == batch && r.mode == mode && r.note.empty() &&
          (r.label == "(a) full offload" || r.label == "(c) sparse, resident"))
        return &r;
    return nullptr;
  };
  std::string t = head;
  t += absl::StrFormat(
      "\nBudget %d tokens (sink + %d predicted blocks + local window), key-summary calibration "
      "every %d steps in (b) and (c); ms/step = mean wall time of %d steps (%d for (a); each "
      "synchronised; calibration steps included), device = median device time.\n\n",
      budget, PredictedBlocks(budget), absl::GetFlag(FLAGS_offload_calibration), steps,
      absl::GetFlag(FLAGS_full_steps));
  t += "| context | batch | mode | ms/step | device ms | tokens/s | (a) / this | this / (c) | "
       "fetched MB/step | fetch GB/s (of link) | predicted blocks cached | stalls / waits per "
       "step | note |\n";
  t += "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- "
       "|\n";
  for (const Result& r : rows) {
    if (!r.note.empty()) {
      t += absl::StrFormat("| %d | %d | %s | | | | | | | | | | %s |\n", r.ctx, r.batch, r.label,
                           r.note);
      continue;
    }
    const Result* a = find(r.ctx, r.batch, "a");
    const Result* c = find(r.ctx, r.batch, "c");
    t += absl::StrFormat(
        "| %d | %d | %s | %.2f | %.2f | %.0f | %s | %s | %.1f | %s | %s | %s | %s |\n", r.ctx,
        r.batch, r.label, r.wall_ms, r.device_ms, r.batch * 1e3 / r.wall_ms,
        a != nullptr && r.mode != "a" ? absl::StrFormat("%.1fx", a->wall_ms / r.wall_ms) : "-",
        c != nullptr && r.mode != "c" ? absl::StrFormat("%.2fx", r.wall_ms / c->wall_ms) : "-",
        r.fetched_mb,
        r.mode == "c" ? "-"
                      : absl::StrFormat("%.1f (%.0f%%)", r.fetch_gbs, 100 * r.fetch_gbs / link),
        r.hits_pct >= 0 ? absl::StrFormat("%.1f%%", r.hits_pct) : "-",
        r.mode == "c" ? "-" : absl::StrFormat("%.1f / %.1f", r.stalls_per_step, r.waits_per_step),
        r.host_stall_ms > 0 ? absl::StrFormat("host waited %.3f ms/step for UCX", r.host_stall_ms)
                            : "");
  }
  return t;
}

// What every row of the table shares: the model and the flags' settings, the local tier,
// the head (link and gather lines) and the rows so far.
struct RowRunner {
  std::shared_ptr<const CudaWeights> w;
  int L = 0, nkv = 0;
  int warmup = 0, steps = 0, budget = 0;
  std::vector<float> pw;  // the predictor's weights, the same for every row
  std::shared_ptr<LocalKvTier> local;
  std::string head;
  double link = 0;  // the link's best rate, GB/s
  std::string preamble, out_path;
  std::vector<Result> rows;
};

// The table is rewritten after every row: a run stopped at its time limit still leaves
// the rows it finished.
void Publish(const RowRunner& rr) {
  if (!rr.out_path.empty())
    std::ofstream(rr.out_path) << rr.preamble
                               << Markdown(rr.head, rr.rows, rr.link, rr.budget, rr.steps);
}

void AddRow(RowRunner& rr, const Result& r) {
  rr.rows.push_back(r);
  Publish(rr);
}

// The local tier, shared by every offload decoder; random contents.
std::shared_ptr<LocalKvTier> CreateFilledLocalTier() {
  const int64_t pool_blocks =
      static_cast<int64_t>(absl::GetFlag(FLAGS_host_pool_gib) * (1 << 30)) / kBlockBytes;
  auto t0 = std::chrono::steady_clock::now();
  auto tier = LocalKvTier::Create(kBlockBytes, pool_blocks);
  BENCH_CHECK_OK(tier.status());
  std::shared_ptr<LocalKvTier> local = *tier;
  BENCH_CHECK_CUDA(FillUniformBf16(static_cast<__nv_bfloat16*>(local->mapped->device_pointer()),
                                   static_cast<int64_t>(local->store->region_bytes() / 2), 4242,
                                   1.0f, nullptr));
  BENCH_CHECK_CUDA(cudaDeviceSynchronize());
  std::printf("\nlocal tier: %.1f GiB pinned, mapped, registered and filled in %.1f s\n",
              local->store->region_bytes() / double(1 << 30),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return local;
}

// The lines above the table: the link's rate, the fetch kernel's at one layer's launch
// sizes, and with --gather_sweep the sweep.
std::string LinkAndGatherHead(const LocalKvTier& local, const Rate& link_rate) {
  const double link = link_rate.best;
  std::string head = absl::StrFormat(
      "Link: contiguous pinned host -> GPU cudaMemcpyAsync of 1 GiB, 5 rounds: best %.1f GB/s, "
      "median %.1f GB/s\n\n",
      link_rate.best, link_rate.median);
  head += absl::StrFormat(
      "| gather (decoder's fetch kernel, %d CTAs) from mapped pinned memory, 8 KiB blocks, "
      "random slots | blocks per launch | GB/s best of 5 | median | best of link | median of "
      "link |\n| --- | ---: | ---: | ---: | ---: | ---: |\n",
      SmCount());
  for (int n : {448, 3584, 16384}) {
    const Rate g = GatherGbs(local, n);
    head +=
        absl::StrFormat("| one layer's fetch | %d | %.1f | %.1f | %.0f%% | %.0f%% |\n", n, g.best,
                        g.median, 100 * g.best / link, 100 * g.median / link_rate.median);
  }
  if (absl::GetFlag(FLAGS_gather_sweep)) head += GatherSweep(local, link_rate);
  return head;
}

// Why the row cannot run ("n/a: ..."), or "" when the GPU and the host pool fit it.
std::string CapacityNote(const RowRunner& rr, int ctx, int batch, char mode, bool remote) {
  const bool full = mode == 'a';
  const double kv = double(batch) * ctx * rr.L * rr.nkv * 2 * 128 * 2;
  size_t free_b, total_b;
  BENCH_CHECK_CUDA(cudaMemGetInfo(&free_b, &total_b));
  const double gpu_need = (mode == 'c' || full) ? kv * 1.08 + (3ull << 30) : 6e9;
  const bool host_mode = mode != 'c' && !remote;
  if (gpu_need > free_b) {
    return absl::StrFormat("n/a: needs %.0f GB of GPU memory, %.0f GB free", gpu_need / 1e9,
                           free_b / 1e9);
  } else if (host_mode && kv > rr.local->store->region_bytes()) {
    return absl::StrFormat("n/a: KV %.0f GB > the %.0f GB host pool", kv / 1e9,
                           rr.local->store->region_bytes() / 1e9);
  }
  return "";
}

// The decoder of one row: sparse with the key-summary calibration; offloaded (to the local
// tier, or `remote`) unless mode 'c'; (a) with a budget over the whole context `cap`.
CudaDecoderOptions RowDecoderOptions(const RowRunner& rr, int batch, char mode, int cap,
                                     const std::shared_ptr<kvstore::RemoteTier>& remote,
                                     const OffloadOptions* tuned) {
  CudaDecoderOptions o;
  o.max_sequences = batch;
  o.max_context = cap;
  o.prefill_chunk = 64;
  o.sparse.enabled = true;
  o.sparse.budget_tokens = rr.budget;
  o.sparse.calibration_step = absl::GetFlag(FLAGS_offload_calibration);
  o.sparse.calibration_source = CalibrationSource::kKeySummary;
  o.predictor_weights = rr.pw;
  o.use_graphs = mode != 'e';
  o.debug_fill_byte = absl::GetFlag(FLAGS_debug_fill_byte);
  if (mode != 'c') {
    if (tuned != nullptr) o.offload = *tuned;
    o.placement = remote != nullptr ? KvPlacement::kRemote : KvPlacement::kHost;
    o.offload.local_tier = rr.local;
    o.offload.remote_tier = remote;
  }
  if (mode == 'r') o.offload.reuse_cached_blocks = false;
  if (mode == 'a') {
    // Every block every step: a budget over the whole context, no reuse, no calibration
    // (the attention is exact anyway).
    o.max_budget_tokens = cap + 256;
    o.sparse.budget_tokens = cap + 256;
    o.sparse.calibration_step = 0;
    o.offload.reuse_cached_blocks = false;
    o.offload.extra_cache_slots = 0;
  }
  return o;
}

// Creates the row's decoder, fills its pool and `batch` random contexts of `ctx` tokens,
// then times it (TimeRow). `setup_s`: from `t_setup` to the contexts filled.
absl::Status MeasureRow(const std::shared_ptr<const CudaWeights>& w, const CudaDecoderOptions& o,
                        int ctx, int batch, int twarm, int tsteps,
                        std::chrono::steady_clock::time_point t_setup, double* setup_s, Result* r) {
  auto dec = CudaDecoder::Create(w, o);
  RETURN_IF_ERR(dec.status());
  CudaDecoder& d = **dec;
  RETURN_IF_ERR(CudaDecoderBenchPeer::FillPoolRandom(d, 99));
  std::vector<std::unique_ptr<Sequence>> owned;
  std::vector<Sequence*> seqs;
  for (int b = 0; b < batch; ++b) {
    owned.push_back(d.NewSequence());
    seqs.push_back(owned.back().get());
    RETURN_IF_ERR(CudaDecoderBenchPeer::FillRandomContext(d, *owned.back(), ctx, 500 + b));
  }
  *setup_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_setup).count();
  RETURN_IF_ERR(TimeRow(d, seqs, twarm, tsteps, r));
  r->lists_hash = ListsHash(d);
  owned.clear();
  return absl::OkStatus();
}

void PrintRow(const Result& r, double setup_s) {
  std::printf(
      "ctx %6d batch %d %-34s %9.3f ms/step (device median %9.3f)  fetched %8.1f MB/step "
      "(%.1f GB/s)  hits %5.1f%%  stalls %.1f of %.1f waits/step  host stall %.3f ms/step  "
      "served-like %.3f ms/step  (setup %.1f s)  lists %016llx\n",
      r.ctx, r.batch, r.label.c_str(), r.wall_ms, r.device_ms, r.fetched_mb, r.fetch_gbs,
      r.hits_pct, r.stalls_per_step, r.waits_per_step, r.host_stall_ms, r.served_like_ms, setup_s,
      static_cast<unsigned long long>(r.lists_hash));
  std::fflush(stdout);
}

// One row of the table: measured, or a note saying why not; printed, added and published.
void RunRow(RowRunner& rr, int ctx, int batch, char mode, const std::string& label,
            std::shared_ptr<kvstore::RemoteTier> remote, const OffloadOptions* tuned = nullptr) {
  Result r;
  r.ctx = ctx;
  r.batch = batch;
  r.mode = std::string(1, mode);
  r.label = label;
  const bool full = mode == 'a';
  const int tsteps = full ? absl::GetFlag(FLAGS_full_steps) : rr.steps;
  const int twarm = full ? 1 : rr.warmup;
  const int cap = ctx + tsteps + twarm + 64;
  r.note = CapacityNote(rr, ctx, batch, mode, remote != nullptr);
  if (!r.note.empty()) {
    std::printf("ctx %d batch %d %s: %s\n", ctx, batch, label.c_str(), r.note.c_str());
    AddRow(rr, r);
    return;
  }
  const CudaDecoderOptions o = RowDecoderOptions(rr, batch, mode, cap, remote, tuned);
  auto t_setup = std::chrono::steady_clock::now();
  double setup_s = 0;
  absl::Status st = MeasureRow(rr.w, o, ctx, batch, twarm, tsteps, t_setup, &setup_s, &r);
  if (!st.ok()) {
    r.note = absl::StrCat("error: ", st.ToString());
    std::printf("ctx %d batch %d %s: %s\n", ctx, batch, label.c_str(), r.note.c_str());
    std::fflush(stdout);
    AddRow(rr, r);
    return;
  }
  PrintRow(r, setup_s);
  AddRow(rr, r);
}

// The local rows: per context and batch, each mode of --offload_modes in order, with the
// --offload_ablations rows of that mode after its own.
void RunLocalRows(RowRunner& rr, const std::string& modes, const std::vector<Ablation>& ablations) {
  bool first_pair = true;  // the eager row only once: it shows the cost of no graphs
  for (int ctx : PositiveInts("offload_contexts", absl::GetFlag(FLAGS_offload_contexts))) {
    for (int batch : PositiveInts("offload_batches", absl::GetFlag(FLAGS_offload_batches))) {
      for (char m : modes) {
        if (m == 'c') RunRow(rr, ctx, batch, 'c', "(c) sparse, resident", nullptr);
        if (m == 'b') RunRow(rr, ctx, batch, 'b', "(b) sparse offload + prefetch", nullptr);
        if (m == 'a') RunRow(rr, ctx, batch, 'a', "(a) full offload", nullptr);
        for (const Ablation& ab : ablations) {
          if (ab.mode == m)
            RunRow(rr, ctx, batch, m, absl::StrCat("(", std::string(1, m), ") ", ab.name), nullptr,
                   &ab.options);
        }
        if (m == 'r') RunRow(rr, ctx, batch, 'r', "(b) without block reuse", nullptr);
        if (m == 'e' && first_pair)
          RunRow(rr, ctx, batch, 'e', "(b) eager, per-layer waits", nullptr);
      }
      first_pair = false;
    }
  }
}

// A storage node process on this host (binary `bin`, UCX transports `tls`), with room for
// the largest remote context and batch.
absl::StatusOr<std::unique_ptr<kvstore::testing::StorageNodeProcess>> StartStorageNode(
    const std::string& bin, const std::string& tls, int L, int nkv) {
  int64_t need = 0;
  for (int ctx : PositiveInts("remote_contexts", absl::GetFlag(FLAGS_remote_contexts)))
    for (int batch : PositiveInts("remote_batches", absl::GetFlag(FLAGS_remote_batches)))
      need = std::max<int64_t>(need, int64_t{batch} * (ctx / 16 + 16) * L * nkv);
  return kvstore::testing::StorageNodeProcess::Start(
      bin,
      {absl::StrCat("--capacity_blocks=", need + 4096), absl::StrCat("--block_bytes=", kBlockBytes),
       absl::StrCat("--ucx_tls=", tls), "--ucx_net_devices=lo", "--fill_byte=60"},
      absl::Seconds(180));
}

// With --storage_node, the (b) rows remote: a storage node process on this host over UCX.
// Returns the node (null without one), which the caller keeps until the table is done.
std::unique_ptr<kvstore::testing::StorageNodeProcess> RunRemoteRows(RowRunner& rr) {
  std::unique_ptr<kvstore::testing::StorageNodeProcess> node;
  const std::string bin = absl::GetFlag(FLAGS_storage_node);
  if (bin.empty()) return node;
  const std::string tls = absl::GetFlag(FLAGS_remote_tls);
  auto n = StartStorageNode(bin, tls, rr.L, rr.nkv);
  if (!n.ok()) {
    std::fprintf(stderr, "storage node: %s\n", n.status().ToString().c_str());
    return node;
  }
  node = *std::move(n);
  kvstore::RemoteTierOptions ro;
  ro.address = node->address();
  ro.ucx.tls = tls;
  ro.ucx.net_devices = "lo";
  ro.data_timeout = absl::Seconds(60);
  auto t = kvstore::RemoteTier::Connect(ro);
  if (!t.ok()) {
    std::fprintf(stderr, "remote tier: %s\n", t.status().ToString().c_str());
    return node;
  }
  std::shared_ptr<kvstore::RemoteTier> remote(std::move(*t));
  for (int ctx : PositiveInts("remote_contexts", absl::GetFlag(FLAGS_remote_contexts)))
    for (int batch : PositiveInts("remote_batches", absl::GetFlag(FLAGS_remote_batches)))
      RunRow(rr, ctx, batch, 'b', absl::StrCat("(b) remote, storage node over UCX ", tls), remote);
  return node;
}

}  // namespace

std::string RunOffloadRows(std::shared_ptr<const CudaWeights> w, const std::string& preamble,
                           const std::string& out_path) {
  const ModelConfig& cfg = w->config();
  RowRunner rr;
  rr.w = w;
  rr.L = cfg.num_hidden_layers;
  rr.nkv = cfg.num_key_value_heads;
  rr.warmup = absl::GetFlag(FLAGS_offload_warmup);
  rr.steps = absl::GetFlag(FLAGS_offload_steps);
  rr.budget = absl::GetFlag(FLAGS_offload_budget);
  const std::string modes = absl::GetFlag(FLAGS_offload_modes);
  rr.pw = RandomPredictorWeights(77);
  rr.preamble = preamble;
  rr.out_path = out_path;

  rr.local = CreateFilledLocalTier();
  const Rate link_rate = LinkGbs(*rr.local);
  rr.link = link_rate.best;
  rr.head = LinkAndGatherHead(*rr.local, link_rate);
  std::printf("\n%s\n", rr.head.c_str());
  std::fflush(stdout);
  const std::vector<Ablation> ablations = ParseAblations(absl::GetFlag(FLAGS_offload_ablations));

  RunLocalRows(rr, modes, ablations);
  // The node process stays up until the table is printed.
  const std::unique_ptr<kvstore::testing::StorageNodeProcess> node = RunRemoteRows(rr);

  Publish(rr);
  const std::string t = preamble + Markdown(rr.head, rr.rows, rr.link, rr.budget, rr.steps);
  std::printf("\n%s", t.c_str());
  return t;
}

}  // namespace apr::cuda
