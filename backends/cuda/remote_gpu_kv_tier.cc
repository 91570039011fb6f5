// The remote tier's copies (docs/CUDA.md "KV offload", docs/KVSTORE.md): per layer group,
// the plan's fetch lists go to pinned memory and a host thread starts UCX gets for them
// once the plan has run; the compute stream waits for them through a mark stream. A
// step's filled blocks wait in the GPU write-back area until the step is complete.
#include "backends/cuda/remote_gpu_kv_tier.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/device_alloc.h"
#include "backends/cuda/offload_kernels.h"
#include "kvstore/cuda/gather_blocks.h"
#include "kvstore/cuda/host_register.h"
#include "kvstore/host_memory.h"

namespace apr::cuda {

RemoteGpuKvTier::~RemoteGpuKvTier() {
  if (thread_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  if (copy_stream_ != nullptr) cudaStreamSynchronize(copy_stream_);
  if (mark_stream_ != nullptr) cudaStreamSynchronize(mark_stream_);
  pending_.clear();
  fetcher_.reset();  // joins its thread, synchronises the copy stream
  DestroyEvents(&plan_events_);
  DestroyEvents(&mark_events_);
  if (copy_stream_ != nullptr) cudaStreamDestroy(copy_stream_);
  if (mark_stream_ != nullptr) cudaStreamDestroy(mark_stream_);
}

// The fetcher of UCX gets into pinned staging, and the thread that starts its jobs.
absl::Status RemoteGpuKvTier::Bind(const GpuCacheBinding& cache) {
  c_ = cache;
  const int L = c_.layers;
  APR_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
  APR_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&mark_stream_, cudaStreamNonBlocking));
  APR_RETURN_IF_ERROR(CreateEvents(L, &plan_events_));
  APR_RETURN_IF_ERROR(CreateEvents(L, &mark_events_));
  auto f = kvstore::GpuBlockFetcher::Remote(nodes_.get(), c_.pool,
                                            std::max(c_.max_fetch, L * c_.kv_heads), chunk_blocks_,
                                            staging_chunks_, copy_stream_);
  if (!f.ok()) return f.status();
  fetcher_ = *std::move(f);
  APR_RETURN_IF_ERROR(AllocPinnedZ(&h_fetch_, int64_t{L} * 2 * c_.max_fetch));
  APR_RETURN_IF_ERROR(AllocPinnedZ(&h_fetch_count_, L));
  pending_.assign(L, {});
  posted_.assign(L, 0);
  started_.assign(L, 0);
  write_backs_.assign(c_.max_sequences, {});
  thread_ = std::thread([this] { FetchLoop(); });
  return absl::OkStatus();
}

absl::Status RemoteGpuKvTier::CreateSequence(uint64_t id, int layers, int kv_heads) {
  if (restorer_ != nullptr) restorer_->MaybeRestore();  // a copy lost earlier, back now
  return nodes_->CreateSequence(id, layers, kv_heads);
}

void RemoteGpuKvTier::FreeSequence(uint64_t id) { nodes_->FreeSequence(id).IgnoreError(); }

// Through a pinned bounce buffer (mapped for the gather kernel, registered with UCX),
// a chunk at a time: gather from staging, then AppendBlocks + UCX puts.
absl::StatusOr<std::vector<uint32_t>> RemoteGpuKvTier::WriteBlocks(
    uint64_t id, const std::vector<kvstore::BlockKey>& keys, const std::vector<uint32_t>& src,
    const __nv_bfloat16* staging) {
  const int64_t n = static_cast<int64_t>(keys.size());
  const int64_t bb = c_.block_bytes;
  constexpr int64_t kChunk = 2048;
  auto bounce = kvstore::HostRegion::Allocate(kChunk * bb, true);
  if (!bounce.ok()) return bounce.status();
  auto mapped = kvstore::MappedHostMemory::Register(bounce->data(), bounce->size());
  if (!mapped.ok()) return mapped.status();
  APR_RETURN_IF_ERROR(nodes_->RegisterStaging(bounce->data(), bounce->size()));
  std::vector<uint32_t> slots;
  slots.reserve(n);
  DeviceBuffer<uint32_t> list;
  absl::Status st = AllocZ(&list, kChunk, 0);
  for (int64_t first = 0; st.ok() && first < n; first += kChunk) {
    const int64_t m = std::min(kChunk, n - first);
    cudaError_t e =
        cudaMemcpy(list.get(), src.data() + first, m * sizeof(uint32_t), cudaMemcpyHostToDevice);
    if (e == cudaSuccess) {
      e = kvstore::LaunchGatherBlocks(staging, list.get(), (*mapped)->device_pointer(), nullptr,
                                      static_cast<int32_t>(m), bb, c_.compute);
    }
    if (e == cudaSuccess) e = cudaStreamSynchronize(c_.compute);
    if (e != cudaSuccess) {
      st = CudaStatus(e, "gather to the bounce buffer", __FILE__, __LINE__);
      break;
    }
    std::vector<const std::byte*> ptrs(m);
    for (int64_t i = 0; i < m; ++i) ptrs[i] = bounce->data() + i * bb;
    auto s = nodes_->WriteBlocks(id, absl::MakeConstSpan(keys).subspan(first, m), ptrs);
    if (!s.ok()) {
      st = s.status();
      break;
    }
    slots.insert(slots.end(), s->begin(), s->end());
  }
  nodes_->UnregisterStaging(bounce->data());
  mapped->reset();
  APR_RETURN_IF_ERROR(st);
  return slots;
}

// One call per layer keeps the reply small (keys are table by table).
absl::StatusOr<std::vector<uint32_t>> RemoteGpuKvTier::AllocateBlocks(
    uint64_t id, const std::vector<kvstore::BlockKey>& keys) {
  const int64_t per = static_cast<int64_t>(keys.size()) / c_.layers;
  std::vector<uint32_t> slots;
  slots.reserve(keys.size());
  for (int l = 0; l < c_.layers; ++l) {
    auto s = nodes_->AllocateBlocks(id, absl::MakeConstSpan(keys).subspan(int64_t{l} * per, per));
    if (!s.ok()) return s.status();
    slots.insert(slots.end(), s->begin(), s->end());
  }
  return slots;
}

absl::Status RemoteGpuKvTier::ReadBlock(uint32_t slot, std::byte* out) {
  return nodes_->Read(absl::MakeConstSpan(&slot, 1), absl::MakeSpan(&out, 1));
}

// --- The fetch thread: plan event -> the host's fetch list -> a fetcher job. ---

absl::Status RemoteGpuKvTier::CopyFetchListToHost(int l, cudaStream_t s) {
  uint32_t* h = h_fetch_.get() + int64_t{l} * 2 * c_.max_fetch;
  const int64_t f = int64_t{l} * c_.max_fetch, bytes = c_.max_fetch * sizeof(uint32_t);
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(h_fetch_count_.get() + l, c_.fetch_count + l,
                                           sizeof(int32_t), cudaMemcpyDeviceToHost, s));
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(h, c_.fetch_src + f, bytes, cudaMemcpyDeviceToHost, s));
  APR_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(h + c_.max_fetch, c_.fetch_dst + f, bytes, cudaMemcpyDeviceToHost, s));
  return absl::OkStatus();
}

void RemoteGpuKvTier::PostFetches(int first, int count) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int l = first; l < first + count; ++l) {
      queue_.push_back(l);
      ++posted_[l];
    }
  }
  cv_.notify_all();
}

void RemoteGpuKvTier::FetchLoop() {
  cudaSetDevice(c_.device);
  for (;;) {
    int l;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      l = queue_.front();
      queue_.pop_front();
    }
    absl::Status s =
        CudaStatus(cudaEventSynchronize(plan_events_[l]), "plan event", __FILE__, __LINE__);
    std::shared_ptr<kvstore::GpuFetchJob> job;
    if (s.ok()) {
      const int n = h_fetch_count_[l];
      if (n < 0 || n > c_.max_fetch) {
        s = absl::InternalError(absl::StrCat("a fetch list of ", n, " blocks"));
      } else if (n > 0) {
        const uint32_t* src = h_fetch_.get() + int64_t{l} * 2 * c_.max_fetch;
        const uint32_t* dst = src + c_.max_fetch;
        auto j = fetcher_->Start(std::vector<uint32_t>(src, src + n),
                                 std::vector<uint32_t>(dst, dst + n), nullptr);
        if (j.ok()) {
          job = *std::move(j);
        } else {
          s = j.status();
        }
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending_[l].push_back(job);
      ++started_[l];
      if (!s.ok() && error_.ok()) error_ = s;
    }
    cv_.notify_all();
  }
}

absl::Status RemoteGpuKvTier::FirstError() {
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

// --- A decode step. ---

// The host needs the lists to issue the UCX gets: counts and lists to pinned memory. A
// block the step filled goes to the write-back area (GPU) first; AfterStep sends it.
absl::Status RemoteGpuKvTier::StartFetches(int first, int count, cudaStream_t s, bool) {
  for (int l = first; l < first + count; ++l) {
    APR_RETURN_IF_ERROR(CopyFetchListToHost(l, s));
    if (!fills_.empty()) {
      const int64_t w = int64_t{l} * c_.max_wb;
      APR_CUDA_RETURN_IF_ERROR(kvstore::LaunchGatherBlocksCounted(c_.pool, c_.wb_src + w, c_.pool,
                                                                  c_.wb_dst + w, c_.wb_count + l,
                                                                  c_.max_wb, c_.block_bytes, 0, s));
    }
    APR_CUDA_RETURN_IF_ERROR(cudaEventRecord(plan_events_[l], s));
  }
  PostFetches(first, count);
  return absl::OkStatus();
}

// The mark stream waits for the layer's jobs and marks them done; the compute stream
// probes, then waits for the marks.
absl::Status RemoteGpuKvTier::WaitFetch(int l, bool) {
  std::deque<std::shared_ptr<kvstore::GpuFetchJob>> jobs;
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return started_[l] >= posted_[l] || !error_.ok(); });
    if (!error_.ok()) return error_;
    jobs.swap(pending_[l]);
  }
  if (jobs.empty()) {
    // Fetched already (the first step after prefill): a wait that cannot stall.
    APR_CUDA_RETURN_IF_ERROR(LaunchStallProbe(c_.issued, c_.done, l, 1, c_.counters, c_.compute));
    return absl::OkStatus();
  }
  for (const auto& job : jobs) {
    if (job != nullptr) APR_RETURN_IF_ERROR(fetcher_->StreamWait(job, mark_stream_));
    APR_CUDA_RETURN_IF_ERROR(LaunchMarkFetched(c_.done, l, mark_stream_));
  }
  APR_CUDA_RETURN_IF_ERROR(cudaEventRecord(mark_events_[l], mark_stream_));
  APR_CUDA_RETURN_IF_ERROR(LaunchStallProbe(c_.issued, c_.done, l, 1, c_.counters, c_.compute));
  APR_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(c_.compute, mark_events_[l], 0));
  return absl::OkStatus();
}

absl::Status RemoteGpuKvTier::FetchOnCompute(int l) {
  APR_RETURN_IF_ERROR(CopyFetchListToHost(l, c_.compute));
  APR_CUDA_RETURN_IF_ERROR(cudaEventRecord(plan_events_[l], c_.compute));
  PostFetches(l, 1);
  return absl::OkStatus();
}

absl::Status RemoteGpuKvTier::FetchListOnCompute(const uint32_t*, const uint32_t*, const int32_t*,
                                                 int) {
  return absl::UnimplementedError(
      "a fetch inside the step from a storage node (predictor-hybrid with a remote cache)");
}

absl::Status RemoteGpuKvTier::DrainFetches() {
  const int L = c_.layers;
  std::vector<std::deque<std::shared_ptr<kvstore::GpuFetchJob>>> jobs(L);
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] {
      if (!error_.ok()) return true;
      for (int l = 0; l < L; ++l)
        if (started_[l] < posted_[l]) return false;
      return true;
    });
    if (!error_.ok()) return error_;
    for (int l = 0; l < L; ++l) jobs[l].swap(pending_[l]);
  }
  for (int l = 0; l < L; ++l) {
    for (const auto& job : jobs[l]) {
      if (job != nullptr) APR_RETURN_IF_ERROR(fetcher_->Wait(job));
      APR_CUDA_RETURN_IF_ERROR(LaunchMarkFetched(c_.done, l, c_.compute));
    }
  }
  APR_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(c_.compute));
  return absl::OkStatus();
}

absl::Status RemoteGpuKvTier::Drain() {
  APR_RETURN_IF_ERROR(DrainFetches());
  APR_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(copy_stream_));
  APR_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(mark_stream_));
  return absl::OkStatus();
}

// --- Write-backs. ---

// The block goes to the sequence's row of the write-back area; AfterStep stores it.
absl::Status RemoteGpuKvTier::PlanWriteBack(int seq_slot, uint64_t id, int block, uint32_t* row) {
  const int images = c_.layers * c_.kv_heads;
  for (int i = 0; i < images; ++i)
    row[i] = static_cast<uint32_t>(c_.write_back_area + int64_t{seq_slot} * images + i);
  fills_.push_back({seq_slot, id, block});
  return absl::OkStatus();
}

// The filled blocks are in the write-back area (the step is complete): store them.
absl::Status RemoteGpuKvTier::AfterStep(int64_t step) {
  APR_RETURN_IF_ERROR(FirstError());
  const int L = c_.layers, nkv = c_.kv_heads;
  for (const Fill& f : fills_) {
    std::vector<kvstore::BlockKey> keys;
    std::vector<uint32_t> slots;
    for (int l = 0; l < L; ++l) {
      for (int g = 0; g < nkv; ++g) {
        keys.push_back({l, g, f.block});
        slots.push_back(
            static_cast<uint32_t>(c_.write_back_area + (int64_t{f.seq_slot} * L + l) * nkv + g));
      }
    }
    auto job = fetcher_->WriteBack(f.id, std::move(keys), std::move(slots), nullptr);
    if (!job.ok()) return job.status();
    write_backs_[f.seq_slot].push_back({*std::move(job), f.block, step});
  }
  fills_.clear();
  return absl::OkStatus();
}

absl::StatusOr<int64_t> RemoteGpuKvTier::CompleteWriteBacks(int seq_slot, int64_t up_to_step) {
  const int images = c_.layers * c_.kv_heads;
  int64_t stored = 0;
  std::vector<WriteBack>& list = write_backs_[seq_slot];
  auto it = list.begin();
  while (it != list.end()) {
    if (it->step > up_to_step) {
      ++it;
      continue;
    }
    APR_RETURN_IF_ERROR(fetcher_->Wait(it->job));
    const std::vector<uint32_t>& slots = kvstore::GpuBlockFetcher::tier_slots(*it->job);
    if (static_cast<int>(slots.size()) != images)
      return absl::InternalError("a write-back returned the wrong number of slots");
    APR_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(c_.tier_table + (int64_t{seq_slot} * c_.max_blocks + it->block) * images,
                   slots.data(), slots.size() * sizeof(uint32_t), cudaMemcpyHostToDevice));
    stored += images;
    it = list.erase(it);
  }
  return stored;
}

void RemoteGpuKvTier::AddStats(OffloadStats* st) const {
  for (const kvstore::NodeTraffic& t : nodes_->node_traffic())
    st->node_bytes_read.emplace_back(t.node, t.stats.bytes_read);
  if (fetcher_ == nullptr) return;
  const kvstore::GpuFetchStats f = fetcher_->stats();
  st->remote_host_stalls = f.host_stalls;
  st->remote_host_stall_seconds = f.host_stall_seconds;
}

}  // namespace apr::cuda
