// The storage tier's GPU benchmark (issue 6, "Measured"): per decode step at
// Llama-3.1-8B geometry (32 layers, 8 KV heads of 128, GQA 4; bf16 blocks of 8 KiB), with
//   (a) the full cache offloaded to pinned host memory and moved to the GPU every step
//       (layer-ahead, double-buffered, contiguous DMA at the link's best), dense attention;
//   (b) predicted sparse offload: per (sequence, layer, KV head) a GPU block cache; after
//       layer l's attention at step t the blocks selected for step t + 1 that are not
//       cached are gathered from mapped pinned memory on a copy stream (GpuBlockFetcher),
//       overlapping the rest of step t; step t + 1 waits on that fetch only;
//   (c) the same sparse attention with the whole cache resident in GPU memory.
// and (b) again with the blocks in a storage node process over UCX (--remote).
//
// The decode step's compute is a stand-in until the CUDA backend lands: each layer
// streams its weight bytes from HBM (the GEMVs of a small-batch decode are bound by
// that) and runs a split-K attention over the selected blocks. The selection is a model:
// sink (4 blocks) + local window (4 blocks) + 56 predicted blocks (budget 1024 tokens), of
// which a fraction --churn changes every step (the predictor's step-to-step difference;
// --churn=1 is the worst case, every predicted block new).
//
// Memory beyond what the host or GPU can hold (128K x batch 8 is 128 GiB of KV) is
// aliased: logical block i of the cache lives in slot i mod capacity. Only addresses
// repeat, not the amount moved or read, so the timing is that of the full size.
//
// Prints Markdown tables: the link and gather bandwidth, then one row per configuration.
#include <cuda_runtime_api.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "base/cuda_status.h"
#include "bench/gpu/bench_kernels.h"
#include "bench/kvstore_gpu_rows.h"
#include "kvstore/block_cache.h"
#include "kvstore/block_store.h"
#include "kvstore/client/remote_tier.h"
#include "kvstore/cuda/gather_blocks.h"
#include "kvstore/cuda/gpu_fetcher.h"
#include "kvstore/cuda/host_register.h"
#include "kvstore/testing/storage_node_process.h"

ABSL_FLAG(std::string, contexts, "32768,131072", "Context lengths (tokens), comma-separated.");
ABSL_FLAG(std::string, batches, "1,8", "Batch sizes, comma-separated.");
ABSL_FLAG(std::string, modes, "a,b,c",
          "Which of (a) full offload, (b) sparse offload with "
          "prefetch, (c) sparse resident to run.");
ABSL_FLAG(std::string, churn, "0.1,0.25,1",
          "Fractions of the predicted blocks that change "
          "every step, for (b) (and (c), whose time does not depend on it).");
ABSL_FLAG(int, steps, 10, "Timed decode steps per configuration.");
ABSL_FLAG(int, warmup, 3, "Untimed decode steps first.");
ABSL_FLAG(double, host_pool_gib, 40, "Pinned host pool (the local tier), GiB.");
ABSL_FLAG(double, gpu_pool_gib, 40, "Largest resident GPU pool for (c), GiB.");
ABSL_FLAG(int, cache_blocks, 96, "GPU block cache slots per (sequence, layer, KV head) in (b).");
ABSL_FLAG(int, layers, 32, "Model geometry: layers.");
ABSL_FLAG(int, kv_heads, 8, "Model geometry: KV heads.");
ABSL_FLAG(int, group, 4, "Model geometry: query heads per KV head.");
ABSL_FLAG(int, hidden, 4096, "Model geometry: hidden size.");
ABSL_FLAG(int, intermediate, 14336, "Model geometry: MLP size.");
ABSL_FLAG(int, predicted_blocks, 56, "Predicted blocks per (layer, KV head): (1024 - 128) / 16.");
ABSL_FLAG(std::string, storage_node, "",
          "storage_node binary: also run (b) with the blocks in a "
          "storage node process over UCX (remote mode). Empty: skip.");
ABSL_FLAG(std::string, remote_tls, "sm", "UCX_TLS for the remote run (same machine).");
ABSL_FLAG(double, remote_pool_gib, 8, "Storage-node pool for the remote run, GiB.");
ABSL_FLAG(std::string, remote_contexts, "32768", "Contexts for the remote run.");
ABSL_FLAG(std::string, gather_kib, "2,8,16,64", "Block sizes for the gather bandwidth table.");

namespace apr::bench {
namespace {

using ::apr::CudaStatus;
using kvstore::BlockCache;
using kvstore::BlockStore;
using kvstore::CachePlan;
using kvstore::GpuBlockFetcher;
using kvstore::GpuFetchJob;
using kvstore::MappedHostMemory;

constexpr int kHeadDim = 128;
constexpr int64_t kBlockBytes = 2 * 16 * kHeadDim * 2;  // bf16
constexpr int kSinkBlocks = 4, kLocalBlocks = 4;

#define RETURN_IF_ERROR(expr) \
  do {                        \
    absl::Status _s = (expr); \
    if (!_s.ok()) return _s;  \
  } while (0)
#define CUDA_OK(call) RETURN_IF_ERROR(CudaStatus((call), #call))

std::vector<std::string> Split(const std::string& s) { return absl::StrSplit(s, ','); }

std::vector<int64_t> Ints(const std::string& s) {
  std::vector<int64_t> out;
  for (const std::string& x : Split(s)) {
    int64_t v = 0;
    if (absl::SimpleAtoi(x, &v)) out.push_back(v);
  }
  return out;
}

std::vector<double> Doubles(const std::string& s) {
  std::vector<double> out;
  for (const std::string& x : Split(s)) {
    double v = 0;
    if (absl::SimpleAtod(x, &v)) out.push_back(v);
  }
  return out;
}

struct Geometry {
  int layers, kv_heads, group, hidden, intermediate;
  int q_heads() const { return kv_heads * group; }
  // Weight bytes read per layer: q, k, v (before attention); o and the MLP (after).
  int64_t qkv_bytes() const {
    return 2LL * hidden * (int64_t{q_heads()} * kHeadDim + 2LL * kv_heads * kHeadDim);
  }
  int64_t rest_bytes() const {
    return 2LL * (int64_t{q_heads()} * kHeadDim * hidden + 3LL * hidden * intermediate);
  }
};

// Resources shared by every configuration.
struct Shared {
  Geometry g;
  cudaStream_t compute = nullptr, copy = nullptr;
  std::unique_ptr<BlockStore> pool;  // the local tier (pinned host memory)
  std::unique_ptr<MappedHostMemory> pool_mapped;
  int64_t pool_blocks = 0;
  void* weights = nullptr;  // max(qkv, rest) bytes, read once per use
  uint32_t* sink = nullptr;
  float* q = nullptr;    // [max batch][q_heads][head_dim]
  float* out = nullptr;  // same
  int max_batch = 0;
};

// Device buffer freed on scope exit.
struct DeviceBuffer {
  void* p = nullptr;
  ~DeviceBuffer() {
    if (p != nullptr) cudaFree(p);
  }
};

absl::Status Alloc(DeviceBuffer* b, int64_t bytes) {
  return CudaStatus(cudaMalloc(&b->p, static_cast<size_t>(bytes)),
                    absl::StrCat("cudaMalloc of ", bytes, " bytes"));
}

// The predicted part of every (sequence, layer, KV head) selection, with churn.
class SelectionModel {
 public:
  SelectionModel(int64_t tables, int64_t blocks, int predicted, uint64_t seed)
      : blocks_(blocks), predicted_(predicted), sets_(tables), rng_(seed) {
    const int64_t lo = kSinkBlocks, hi = blocks - kLocalBlocks;
    for (auto& s : sets_) {
      while (static_cast<int>(s.size()) < predicted_) {
        const int64_t b = lo + static_cast<int64_t>(rng_() % (hi - lo));
        if (std::find(s.begin(), s.end(), b) == s.end()) s.push_back(b);
      }
    }
  }
  // Replaces round(churn * predicted) blocks of table t's set by others.
  void Step(int64_t t, double churn) {
    std::vector<int64_t>& s = sets_[t];
    const int n = static_cast<int>(std::lround(churn * predicted_));
    const int64_t lo = kSinkBlocks, hi = blocks_ - kLocalBlocks;
    if (hi - lo <= predicted_) return;  // every candidate is selected: nothing can change
    for (int i = 0; i < n; ++i) {
      const size_t victim = rng_() % s.size();
      for (;;) {
        const int64_t b = lo + static_cast<int64_t>(rng_() % (hi - lo));
        if (std::find(s.begin(), s.end(), b) == s.end()) {
          s[victim] = b;
          break;
        }
      }
    }
  }
  // Sink, predicted, local: kSinkBlocks + predicted + kLocalBlocks distinct blocks.
  void Selection(int64_t t, std::vector<int64_t>* out) const {
    out->clear();
    for (int64_t b = 0; b < kSinkBlocks; ++b) out->push_back(b);
    out->insert(out->end(), sets_[t].begin(), sets_[t].end());
    for (int64_t b = blocks_ - kLocalBlocks; b < blocks_; ++b) out->push_back(b);
  }

 private:
  int64_t blocks_;
  int predicted_;
  std::vector<std::vector<int64_t>> sets_;
  std::mt19937_64 rng_;
};

absl::StatusOr<double> LinkBandwidth(Shared& sh) {
  const int64_t bytes = int64_t{1} << 30;
  DeviceBuffer dst;
  RETURN_IF_ERROR(Alloc(&dst, bytes));
  cudaEvent_t a, b;
  CUDA_OK(cudaEventCreate(&a));
  CUDA_OK(cudaEventCreate(&b));
  float best = 1e30f;
  for (int i = 0; i < 5; ++i) {
    CUDA_OK(cudaEventRecord(a, sh.copy));
    CUDA_OK(cudaMemcpyAsync(dst.p, sh.pool->base(), bytes, cudaMemcpyHostToDevice, sh.copy));
    CUDA_OK(cudaEventRecord(b, sh.copy));
    CUDA_OK(cudaEventSynchronize(b));
    float ms = 0;
    CUDA_OK(cudaEventElapsedTime(&ms, a, b));
    best = std::min(best, ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return bytes / (best * 1e-3) / 1e9;
}

// Gather kernel from mapped pinned memory: random slots of the pool to random GPU slots,
// `n` blocks per launch, like one layer's fetch.
absl::StatusOr<double> GatherBandwidth(Shared& sh, int64_t block_bytes, int n) {
  const int64_t src_blocks = static_cast<int64_t>(sh.pool->region_bytes()) / block_bytes;
  const int64_t dst_blocks = std::max<int64_t>(4 * n, 65536);
  DeviceBuffer dst, idx;
  RETURN_IF_ERROR(Alloc(&dst, dst_blocks * block_bytes));
  RETURN_IF_ERROR(Alloc(&idx, int64_t{2} * n * sizeof(uint32_t) * 8));
  std::mt19937 rng(n);
  std::vector<uint32_t> host(2 * n * 8);
  for (int j = 0; j < 8; ++j) {
    for (int i = 0; i < n; ++i) {
      host[j * 2 * n + i] = rng() % src_blocks;
      host[j * 2 * n + n + i] = rng() % dst_blocks;
    }
  }
  CUDA_OK(cudaMemcpy(idx.p, host.data(), host.size() * sizeof(uint32_t), cudaMemcpyHostToDevice));
  cudaEvent_t a, b;
  CUDA_OK(cudaEventCreate(&a));
  CUDA_OK(cudaEventCreate(&b));
  const auto* ix = static_cast<const uint32_t*>(idx.p);
  CUDA_OK(kvstore::LaunchGatherBlocks(sh.pool_mapped->device_pointer(), ix, dst.p, ix + n, n,
                                      block_bytes, sh.copy));
  const int reps = std::max(8, static_cast<int>((int64_t{2} << 30) / (int64_t{n} * block_bytes)));
  CUDA_OK(cudaEventRecord(a, sh.copy));
  for (int r = 0; r < reps; ++r) {
    const uint32_t* e = ix + (r % 8) * 2 * n;
    CUDA_OK(kvstore::LaunchGatherBlocks(sh.pool_mapped->device_pointer(), e, dst.p, e + n, n,
                                        block_bytes, sh.copy));
  }
  CUDA_OK(cudaEventRecord(b, sh.copy));
  CUDA_OK(cudaEventSynchronize(b));
  float ms = 0;
  CUDA_OK(cudaEventElapsedTime(&ms, a, b));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return double(reps) * n * block_bytes / (ms * 1e-3) / 1e9;
}

// (a): every layer's whole cache crosses PCIe every step, one layer ahead of the compute.
absl::StatusOr<Result> RunFullOffload(Shared& sh, const Config& c) {
  const Geometry& g = sh.g;
  if (g.layers % 2 != 0) return absl::InvalidArgumentError("(a) double-buffers by layer parity");
  const int64_t nb = c.ctx / 16, per_seq_layer = int64_t{g.kv_heads} * nb;
  const int64_t layer_blocks = c.batch * per_seq_layer;
  DeviceBuffer landing, lists, partial;
  RETURN_IF_ERROR(Alloc(&landing, 2 * layer_blocks * kBlockBytes));
  // Dense attention: list (b, h) is every block of that sequence and head in the landing
  // buffer.
  std::vector<int32_t> host_lists(layer_blocks);
  for (int64_t i = 0; i < layer_blocks; ++i) host_lists[i] = static_cast<int32_t>(i);
  RETURN_IF_ERROR(Alloc(&lists, layer_blocks * sizeof(int32_t)));
  CUDA_OK(cudaMemcpy(lists.p, host_lists.data(), layer_blocks * sizeof(int32_t),
                     cudaMemcpyHostToDevice));
  AttentionArgs args;
  args.batch = c.batch;
  args.kv_heads = g.kv_heads;
  args.group = g.group;
  args.head_dim = kHeadDim;
  args.q = sh.q;
  args.slots = static_cast<const int32_t*>(lists.p);
  args.blocks_per_list = static_cast<int32_t>(nb);
  args.blocks_per_split = 16;
  args.out = sh.out;
  RETURN_IF_ERROR(Alloc(&partial, AttentionScratchFloats(args) * sizeof(float)));
  args.partial = static_cast<float*>(partial.p);

  std::vector<cudaEvent_t> copied(g.layers), attended(2);
  for (auto& e : copied) CUDA_OK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  for (auto& e : attended) CUDA_OK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  auto* base = static_cast<std::byte*>(landing.p);
  // Copies layer l of every sequence into landing buffer l % 2 (runs contiguous in the
  // pool, wrapped at its end when aliased).
  auto copy_layer = [&](int l) -> absl::Status {
    std::byte* dst = base + (l % 2) * layer_blocks * kBlockBytes;
    for (int b = 0; b < c.batch; ++b) {
      int64_t first = ((int64_t{b} * g.layers + l) * g.kv_heads * nb) % sh.pool_blocks;
      int64_t left = per_seq_layer, at = b * per_seq_layer;
      while (left > 0) {
        const int64_t run = std::min(left, sh.pool_blocks - first);
        CUDA_OK(cudaMemcpyAsync(dst + at * kBlockBytes, sh.pool->slot_data(first),
                                run * kBlockBytes, cudaMemcpyHostToDevice, sh.copy));
        left -= run;
        at += run;
        first = 0;
      }
    }
    return CudaStatus(cudaEventRecord(copied[l], sh.copy), "cudaEventRecord");
  };
  auto step = [&]() -> absl::Status {
    for (int l = 0; l < g.layers; ++l) {
      CUDA_OK(LaunchWeightStream(sh.weights, g.qkv_bytes(), sh.sink, sh.compute));
      CUDA_OK(cudaStreamWaitEvent(sh.compute, copied[l], 0));
      args.pool = base + (l % 2) * layer_blocks * kBlockBytes;
      CUDA_OK(LaunchSparseAttention(args, sh.compute));
      CUDA_OK(cudaEventRecord(attended[l % 2], sh.compute));
      // The next layer's copy reuses the buffer of layer l - 1, whose attention is done
      // (stream order: attended[(l + 1) % 2] was recorded after layer l - 1's attention).
      const int next = (l + 1) % g.layers;
      CUDA_OK(cudaStreamWaitEvent(sh.copy, attended[(l + 1) % 2], 0));
      RETURN_IF_ERROR(copy_layer(next));
      CUDA_OK(LaunchWeightStream(sh.weights, g.rest_bytes(), sh.sink, sh.compute));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(copy_layer(0));
  for (int i = 0; i < absl::GetFlag(FLAGS_warmup); ++i) RETURN_IF_ERROR(step());
  CUDA_OK(cudaDeviceSynchronize());
  const absl::Time t0 = absl::Now();
  const int steps = absl::GetFlag(FLAGS_steps);
  for (int i = 0; i < steps; ++i) RETURN_IF_ERROR(step());
  CUDA_OK(cudaDeviceSynchronize());
  Result r;
  r.ms_per_step = absl::ToDoubleMilliseconds(absl::Now() - t0) / steps;
  r.fetched_mib_per_step = double(g.layers) * layer_blocks * kBlockBytes / (1 << 20);
  for (auto e : copied) cudaEventDestroy(e);
  for (auto e : attended) cudaEventDestroy(e);
  return r;
}

// One (b) or (c) run. The former locals of RunSparse, declared in the order it made them
// (so released in the same order) and under the same names, so that the CUDA_OK call text
// in error messages is unchanged; its lambdas are the member functions.
struct SparseRun {
  SparseRun(Shared& shared, const Config& config, kvstore::RemoteTier* remote_tier,
            int64_t remote_blocks);
  absl::StatusOr<Result> Run();
  absl::Status Allocate();
  absl::Status CreateEvents();
  absl::Status PlanLayer(int l, int parity, double churn, cudaEvent_t after);
  absl::Status Step(int s, int measured);
  absl::Status ReadTimedStalls(Result* r);
  uint32_t TierSlot(int64_t t, int64_t blk) const {
    return static_cast<uint32_t>((t * nb + blk) % tier_blocks);
  }
  int32_t* ListAt(int parity, int l) const {
    return reinterpret_cast<int32_t*>(list_memory->data()) +
           (int64_t{parity} * g.layers + l) * list_ints;
  }
  const int32_t* ListDev(int parity, int l) const {
    return static_cast<const int32_t*>((*lists)->device_pointer()) +
           (int64_t{parity} * g.layers + l) * list_ints;
  }

  Shared& sh;
  const Config& c;
  kvstore::RemoteTier* const remote;
  const Geometry& g;
  const bool offload;
  const int64_t nb, tables;
  const int per_list, cache;
  const int64_t tier_blocks;
  const int64_t resident_blocks;  // (c)'s GPU pool: the cache, aliased beyond the flag's size
  const int64_t list_ints;        // one layer's slot lists: batch * kv_heads * per_list
  const int warmup, steps;
  // Fetch waits timed with events (local (b)); remote (b) reads the fetcher's counts.
  const bool timed_stalls;
  DeviceBuffer gpu_pool, partial;
  absl::StatusOr<kvstore::HostRegion> list_memory;
  absl::StatusOr<std::unique_ptr<MappedHostMemory>> lists;
  AttentionArgs args;
  std::unique_ptr<GpuBlockFetcher> fetcher;
  std::optional<SelectionModel> model;
  std::vector<BlockCache> caches;
  std::vector<std::shared_ptr<GpuFetchJob>> jobs;
  std::vector<int64_t> wanted;
  CachePlan plan;
  int64_t fetched_blocks = 0;
  // Timing events of the measured steps: when the compute stream reached a layer's fetch
  // wait, and when that fetch finished on the copy stream (local mode).
  std::vector<cudaEvent_t> ready, fetched;
  std::vector<cudaEvent_t> attended;
};

SparseRun::SparseRun(Shared& shared, const Config& config, kvstore::RemoteTier* remote_tier,
                     int64_t remote_blocks)
    : sh(shared),
      c(config),
      remote(remote_tier),
      g(shared.g),
      offload(config.mode == 'b'),
      nb(config.ctx / 16),
      tables(int64_t{config.batch} * g.layers * g.kv_heads),
      per_list(kSinkBlocks + absl::GetFlag(FLAGS_predicted_blocks) + kLocalBlocks),
      cache(absl::GetFlag(FLAGS_cache_blocks)),
      tier_blocks(remote_tier != nullptr ? remote_blocks : shared.pool_blocks),
      resident_blocks(std::min<int64_t>(
          tables * nb,
          static_cast<int64_t>(absl::GetFlag(FLAGS_gpu_pool_gib) * (1 << 30)) / kBlockBytes)),
      list_ints(int64_t{config.batch} * g.kv_heads * per_list),
      warmup(absl::GetFlag(FLAGS_warmup)),
      steps(absl::GetFlag(FLAGS_steps)),
      timed_stalls(offload && remote == nullptr) {}

// The GPU pool ((b) the block caches, (c) the resident cache), the slot lists, the
// attention's scratch and, for (b), the fetcher and the block caches; the selection model.
absl::Status SparseRun::Allocate() {
  const int64_t gpu_blocks = offload ? tables * cache : resident_blocks;
  RETURN_IF_ERROR(Alloc(&gpu_pool, gpu_blocks * kBlockBytes));
  CUDA_OK(cudaMemset(gpu_pool.p, 0, gpu_blocks * kBlockBytes));

  // Slot lists the attention reads: mapped pinned, [2 steps][layers][batch * kv_heads][per_list].
  list_memory = kvstore::HostRegion::Allocate(2 * g.layers * list_ints * 4, true);
  if (!list_memory.ok()) return list_memory.status();
  lists = MappedHostMemory::Register(list_memory->data(), list_memory->size());
  if (!lists.ok()) return lists.status();

  args.batch = c.batch;
  args.kv_heads = g.kv_heads;
  args.group = g.group;
  args.head_dim = kHeadDim;
  args.q = sh.q;
  args.pool = gpu_pool.p;
  args.blocks_per_list = per_list;
  args.blocks_per_split = 8;
  args.out = sh.out;
  RETURN_IF_ERROR(Alloc(&partial, AttentionScratchFloats(args) * sizeof(float)));
  args.partial = static_cast<float*>(partial.p);

  if (offload) {
    const int32_t max_job = static_cast<int32_t>(c.batch * g.kv_heads * per_list);
    auto f = remote != nullptr
                 ? GpuBlockFetcher::Remote(remote, gpu_pool.p, max_job, 256, 4, sh.copy)
                 : GpuBlockFetcher::Local(sh.pool.get(), sh.pool_mapped->device_pointer(),
                                          gpu_pool.p, max_job, sh.copy);
    if (!f.ok()) return f.status();
    fetcher = *std::move(f);
  }
  model.emplace(tables, nb, absl::GetFlag(FLAGS_predicted_blocks), c.ctx * 31 + c.batch);
  if (offload) caches.assign(tables, BlockCache(cache));
  jobs.resize(g.layers);
  return absl::OkStatus();
}

// The fetch-wait timing events (local (b) only), then one "attention done" event per layer.
absl::Status SparseRun::CreateEvents() {
  if (timed_stalls) {
    ready.resize(int64_t{steps} * g.layers);
    fetched.resize(ready.size());
    for (auto& e : ready) CUDA_OK(cudaEventCreate(&e));
    for (auto& e : fetched) CUDA_OK(cudaEventCreate(&e));
  }
  attended.resize(g.layers);
  for (auto& e : attended) CUDA_OK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return absl::OkStatus();
}

// Plans layer l's selection into list `parity` and, for (b), starts the fetch of what
// the caches lack (after `after`: the attention that last read the evicted slots).
absl::Status SparseRun::PlanLayer(int l, int parity, double churn, cudaEvent_t after) {
  std::vector<uint32_t> src, dst;
  int32_t* out = ListAt(parity, l);
  for (int b = 0; b < c.batch; ++b) {
    for (int h = 0; h < g.kv_heads; ++h) {
      const int64_t t = (int64_t{b} * g.layers + l) * g.kv_heads + h;
      if (churn > 0) model->Step(t, churn);
      model->Selection(t, &wanted);
      int32_t* list = out + (int64_t{b} * g.kv_heads + h) * per_list;
      if (!offload) {
        for (int i = 0; i < per_list; ++i) {
          list[i] = static_cast<int32_t>((t * nb + wanted[i]) % resident_blocks);
        }
        continue;
      }
      RETURN_IF_ERROR(caches[t].Plan(wanted, &plan));
      for (int i = 0; i < per_list; ++i) list[i] = static_cast<int32_t>(t * cache + plan.slot[i]);
      for (int32_t i : plan.fetch) {
        src.push_back(TierSlot(t, wanted[i]));
        dst.push_back(static_cast<uint32_t>(t * cache + plan.slot[i]));
      }
    }
  }
  if (!offload) return absl::OkStatus();
  fetched_blocks += static_cast<int64_t>(src.size());
  auto job = fetcher->Start(std::move(src), std::move(dst), after);
  if (!job.ok()) return job.status();
  jobs[l] = *std::move(job);
  return absl::OkStatus();
}

// Decode step `s` (lists of parity s % 2); `measured` is the timed step's index, else -1.
absl::Status SparseRun::Step(int s, int measured) {
  const int parity = s % 2;
  for (int l = 0; l < g.layers; ++l) {
    CUDA_OK(LaunchWeightStream(sh.weights, g.qkv_bytes(), sh.sink, sh.compute));
    if (offload && jobs[l] != nullptr) {
      if (measured >= 0 && timed_stalls) {
        CUDA_OK(cudaEventRecord(ready[int64_t{measured} * g.layers + l], sh.compute));
      }
      RETURN_IF_ERROR(fetcher->StreamWait(jobs[l], sh.compute));
    }
    args.slots = ListDev(parity, l);
    CUDA_OK(LaunchSparseAttention(args, sh.compute));
    CUDA_OK(cudaEventRecord(attended[l], sh.compute));
    CUDA_OK(LaunchWeightStream(sh.weights, g.rest_bytes(), sh.sink, sh.compute));
    // The selection for step s + 1 needs this layer's attention (the predictor's input).
    CUDA_OK(cudaEventSynchronize(attended[l]));
    RETURN_IF_ERROR(PlanLayer(l, 1 - parity, c.churn, attended[l]));
    if (measured >= 0 && timed_stalls) {
      CUDA_OK(cudaEventRecord(fetched[int64_t{measured} * g.layers + l], sh.copy));
    }
  }
  return absl::OkStatus();
}

// The stalls from the timing events: the fetch of (step i, layer l) waited on at step i + 1.
absl::Status SparseRun::ReadTimedStalls(Result* r) {
  int64_t stalled = 0;
  double stall_ms = 0;
  for (int i = 0; i + 1 < steps; ++i) {
    for (int l = 0; l < g.layers; ++l) {
      float ms = 0;
      CUDA_OK(cudaEventElapsedTime(&ms, ready[int64_t{i + 1} * g.layers + l],
                                   fetched[int64_t{i} * g.layers + l]));
      if (ms > 0) {
        ++stalled;
        stall_ms += ms;
      }
    }
  }
  r->stalled_layers_per_step = double(stalled) / std::max(1, steps - 1);
  r->stall_ms_per_step = stall_ms / std::max(1, steps - 1);
  return absl::OkStatus();
}

absl::StatusOr<Result> SparseRun::Run() {
  if (cache < per_list) return absl::InvalidArgumentError("--cache_blocks below the selection");
  if (nb < per_list) {
    return absl::InvalidArgumentError(
        absl::StrCat("a context of ", c.ctx, " tokens is shorter than the selection"));
  }
  RETURN_IF_ERROR(Allocate());
  RETURN_IF_ERROR(CreateEvents());
  // Step 0's selection, fetched before the clock starts.
  for (int l = 0; l < g.layers; ++l) RETURN_IF_ERROR(PlanLayer(l, 0, 0, nullptr));
  CUDA_OK(cudaDeviceSynchronize());

  int s = 0;
  for (int i = 0; i < warmup; ++i) RETURN_IF_ERROR(Step(s++, -1));
  CUDA_OK(cudaDeviceSynchronize());
  const kvstore::GpuFetchStats before = fetcher ? fetcher->stats() : kvstore::GpuFetchStats();
  fetched_blocks = 0;
  const absl::Time t0 = absl::Now();
  for (int i = 0; i < steps; ++i) RETURN_IF_ERROR(Step(s++, i));
  CUDA_OK(cudaDeviceSynchronize());
  Result r;
  r.ms_per_step = absl::ToDoubleMilliseconds(absl::Now() - t0) / steps;
  r.fetched_mib_per_step = double(fetched_blocks) * kBlockBytes / steps / (1 << 20);
  if (timed_stalls) {
    RETURN_IF_ERROR(ReadTimedStalls(&r));
  } else if (fetcher) {
    const kvstore::GpuFetchStats after = fetcher->stats();
    r.stalled_layers_per_step = double(after.host_stalls - before.host_stalls) / steps;
    r.stall_ms_per_step = (after.host_stall_seconds - before.host_stall_seconds) * 1e3 / steps;
    r.note = absl::StrFormat("host waits for UCX: %d, copy not done at wait: %d",
                             after.host_stalls - before.host_stalls,
                             after.gpu_not_ready - before.gpu_not_ready);
  }
  for (auto e : ready) cudaEventDestroy(e);
  for (auto e : fetched) cudaEventDestroy(e);
  for (auto e : attended) cudaEventDestroy(e);
  fetcher.reset();
  return r;
}

// (b) and (c): sparse attention over sink + predicted + local blocks, selected per layer
// after its attention (the host waits for it, as it would for the predictor's output).
absl::StatusOr<Result> RunSparse(Shared& sh, const Config& c, kvstore::RemoteTier* remote,
                                 int64_t remote_blocks) {
  return SparseRun(sh, c, remote, remote_blocks).Run();
}

absl::Status Setup(Shared& sh) {
  const Geometry& g = sh.g;
  CUDA_OK(cudaStreamCreateWithFlags(&sh.compute, cudaStreamNonBlocking));
  CUDA_OK(cudaStreamCreateWithFlags(&sh.copy, cudaStreamNonBlocking));
  sh.pool_blocks =
      static_cast<int64_t>(absl::GetFlag(FLAGS_host_pool_gib) * (1 << 30)) / kBlockBytes;
  const absl::Time t0 = absl::Now();
  auto pool = BlockStore::Create({.block_bytes = kBlockBytes, .capacity_blocks = sh.pool_blocks});
  if (!pool.ok()) return pool.status();
  sh.pool = *std::move(pool);
  std::memset(sh.pool->base(), 0x3c, sh.pool->region_bytes());  // bf16 0x3c3c, about 0.0115
  auto mapped = MappedHostMemory::Register(sh.pool->base(), sh.pool->region_bytes());
  if (!mapped.ok()) return mapped.status();
  sh.pool_mapped = *std::move(mapped);
  std::fprintf(stderr, "host pool of %.1f GiB mapped and registered in %.1f s\n",
               sh.pool->region_bytes() / double(1 << 30), absl::ToDoubleSeconds(absl::Now() - t0));
  CUDA_OK(cudaMalloc(&sh.weights, std::max(g.qkv_bytes(), g.rest_bytes())));
  CUDA_OK(cudaMemset(sh.weights, 0x3c, std::max(g.qkv_bytes(), g.rest_bytes())));
  CUDA_OK(cudaMalloc(reinterpret_cast<void**>(&sh.sink), 16));
  const int64_t qn = int64_t{sh.max_batch} * g.q_heads() * kHeadDim;
  std::vector<float> q(qn);
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  for (float& x : q) x = nd(rng);
  CUDA_OK(cudaMalloc(reinterpret_cast<void**>(&sh.q), qn * sizeof(float)));
  CUDA_OK(cudaMemcpy(sh.q, q.data(), qn * sizeof(float), cudaMemcpyHostToDevice));
  CUDA_OK(cudaMalloc(reinterpret_cast<void**>(&sh.out), qn * sizeof(float)));
  return absl::OkStatus();
}

std::string Machine() {
  cudaDeviceProp p;
  std::string gpu = cudaGetDeviceProperties(&p, 0) == cudaSuccess ? p.name : "no GPU";
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  return absl::StrCat(host, ", ", gpu);
}

// The title line and the geometry line.
void PrintHeader(const Shared& sh) {
  std::printf("# kvstore_gpu_bench on %s, %s\n", Machine().c_str(),
              absl::FormatTime("%Y-%m-%d", absl::Now(), absl::LocalTimeZone()).c_str());
  std::printf(
      "# geometry: %d layers, %d KV heads x %d, head_dim %d, hidden %d, MLP %d; "
      "weights streamed per layer %.1f MB; blocks of %lld bytes; budget %d blocks\n\n",
      sh.g.layers, sh.g.kv_heads, sh.g.group, kHeadDim, sh.g.hidden, sh.g.intermediate,
      (sh.g.qkv_bytes() + sh.g.rest_bytes()) / 1e6, static_cast<long long>(kBlockBytes),
      kSinkBlocks + absl::GetFlag(FLAGS_predicted_blocks) + kLocalBlocks);
}

// The link's bandwidth, then the gather table (each block size against it).
void PrintBandwidths(Shared& sh) {
  auto link = LinkBandwidth(sh);
  const double link_gbs = link.ok() ? *link : 0;
  std::printf("Link: contiguous pinned host -> GPU cudaMemcpyAsync of 1 GiB: %.1f GB/s\n\n",
              link_gbs);
  std::printf("| gather from mapped pinned memory | blocks per launch | GB/s | of link |\n");
  std::printf("| --- | --- | --- | --- |\n");
  for (int64_t kib : Ints(absl::GetFlag(FLAGS_gather_kib))) {
    for (int n : {448, 3584}) {  // one layer's fetch at churn 1: batch 1 and 8
      auto bw = GatherBandwidth(sh, kib << 10, n);
      if (!bw.ok()) {
        std::printf("| %lld KiB | %d | error: %s | |\n", static_cast<long long>(kib), n,
                    std::string(bw.status().message()).c_str());
        continue;
      }
      std::printf("| %lld KiB | %d | %.1f | %.0f%% |\n", static_cast<long long>(kib), n, *bw,
                  100 * *bw / link_gbs);
    }
  }
  std::printf("\n");
  std::fflush(stdout);
}

// Runs one configuration, logs it to stderr and adds its row.
void RunRow(Shared& sh, const Config& c, kvstore::RemoteTier* remote, int64_t remote_blocks,
            std::vector<Row>& rows) {
  absl::StatusOr<Result> r =
      c.mode == 'a' ? RunFullOffload(sh, c) : RunSparse(sh, c, remote, remote_blocks);
  Row row{c, r.ok() ? *r : Result(), r.ok() ? "" : std::string(r.status().message())};
  std::fprintf(
      stderr, "ctx %lld batch %d mode %c churn %.2f%s: %s\n", static_cast<long long>(c.ctx),
      c.batch, c.mode, c.churn, c.remote ? " remote" : "",
      r.ok() ? absl::StrFormat("%.2f ms/step", r->ms_per_step).c_str() : row.error.c_str());
  rows.push_back(row);
}

// The local rows: every context, batch and --modes letter ((b) once per churn).
void RunLocalRows(Shared& sh, const std::vector<int64_t>& contexts,
                  const std::vector<int64_t>& batches, const std::vector<double>& churns,
                  std::vector<Row>& rows) {
  const std::string modes = absl::GetFlag(FLAGS_modes);
  for (int64_t ctx : contexts) {
    for (int64_t batch : batches) {
      for (char m : modes) {
        if (m == 'a') RunRow(sh, {ctx, static_cast<int>(batch), 'a', 1.0, false}, nullptr, 0, rows);
        if (m == 'c') {
          RunRow(sh, {ctx, static_cast<int>(batch), 'c', churns.back(), false}, nullptr, 0, rows);
        }
        if (m == 'b') {
          for (double ch : churns) {
            RunRow(sh, {ctx, static_cast<int>(batch), 'b', ch, false}, nullptr, 0, rows);
          }
        }
      }
    }
  }
}

// The storage node process and the connection to it; Main keeps both until it returns.
struct RemoteStorage {
  std::unique_ptr<kvstore::testing::StorageNodeProcess> node;
  std::unique_ptr<kvstore::RemoteTier> remote;
};

// Remote: the blocks in a storage node process on this machine, over UCX; (b) for every
// --remote_contexts, batch and churn. Nothing without --storage_node or when it fails.
void RunRemoteRows(Shared& sh, const std::vector<int64_t>& batches,
                   const std::vector<double>& churns, RemoteStorage& storage,
                   std::vector<Row>& rows) {
  if (absl::GetFlag(FLAGS_storage_node).empty()) return;
  const int64_t remote_blocks =
      static_cast<int64_t>(absl::GetFlag(FLAGS_remote_pool_gib) * (1 << 30)) / kBlockBytes;
  const std::string tls = absl::GetFlag(FLAGS_remote_tls);
  auto n = kvstore::testing::StorageNodeProcess::Start(
      absl::GetFlag(FLAGS_storage_node),
      {absl::StrCat("--capacity_blocks=", remote_blocks),
       absl::StrCat("--block_bytes=", kBlockBytes), absl::StrCat("--ucx_tls=", tls),
       "--ucx_net_devices=lo"},
      absl::Seconds(120));
  if (!n.ok()) {
    std::fprintf(stderr, "storage node: %s\n", std::string(n.status().message()).c_str());
    return;
  }
  storage.node = *std::move(n);
  kvstore::RemoteTierOptions o;
  o.address = storage.node->address();
  o.ucx.tls = tls;
  o.ucx.net_devices = "lo";
  o.data_timeout = absl::Seconds(60);
  auto t = kvstore::RemoteTier::Connect(o);
  if (!t.ok()) {
    std::fprintf(stderr, "remote tier: %s\n", std::string(t.status().message()).c_str());
    return;
  }
  storage.remote = *std::move(t);
  for (int64_t ctx : Ints(absl::GetFlag(FLAGS_remote_contexts))) {
    for (int64_t batch : batches) {
      for (double ch : churns) {
        RunRow(sh, {ctx, static_cast<int>(batch), 'b', ch, true}, storage.remote.get(),
               remote_blocks, rows);
      }
    }
  }
}

int Main() {
  Shared sh;
  sh.g = {absl::GetFlag(FLAGS_layers), absl::GetFlag(FLAGS_kv_heads), absl::GetFlag(FLAGS_group),
          absl::GetFlag(FLAGS_hidden), absl::GetFlag(FLAGS_intermediate)};
  const std::vector<int64_t> contexts = Ints(absl::GetFlag(FLAGS_contexts));
  const std::vector<int64_t> batches = Ints(absl::GetFlag(FLAGS_batches));
  const std::vector<double> churns = Doubles(absl::GetFlag(FLAGS_churn));
  sh.max_batch = static_cast<int>(*std::max_element(batches.begin(), batches.end()));
  if (absl::Status s = Setup(sh); !s.ok()) {
    std::fprintf(stderr, "setup: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  PrintHeader(sh);
  PrintBandwidths(sh);
  std::vector<Row> rows;
  RunLocalRows(sh, contexts, batches, churns, rows);
  RemoteStorage storage;  // outlives the rows' table, as before
  RunRemoteRows(sh, batches, churns, storage, rows);
  PrintRows(rows, absl::GetFlag(FLAGS_remote_tls));
  return 0;
}

}  // namespace
}  // namespace apr::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Storage-tier GPU benchmark: (a) full offload, (b) sparse offload with cross-token "
      "prefetch, (c) sparse resident, at Llama-3.1-8B geometry. See the file comment.");
  absl::ParseCommandLine(argc, argv);
  return apr::bench::Main();
}
