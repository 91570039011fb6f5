#include "kvstore/cuda/gpu_fetcher.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/cuda_status.h"
#include "base/status_macros.h"
#include "kvstore/cuda/gather_blocks.h"

namespace apr::kvstore {

struct GpuFetchJob {
  enum class Kind { kFetch, kWriteBack };
  Kind kind = Kind::kFetch;
  std::vector<uint32_t> tier_slots;
  std::vector<uint32_t> gpu_slots;
  uint64_t seq = 0;             // write-back
  std::vector<BlockKey> keys;   // write-back
  cudaEvent_t after = nullptr;  // the copy stream waits for it first
  cudaEvent_t done = nullptr;   // recorded on the copy stream after the job's last copy
  bool enqueued = false;        // `done` is recorded (or the job failed)
  absl::Status status;
  ~GpuFetchJob() {
    if (done != nullptr) cudaEventDestroy(done);
  }
};

const std::vector<uint32_t>& GpuBlockFetcher::tier_slots(const GpuFetchJob& job) {
  return job.tier_slots;
}

absl::StatusOr<std::unique_ptr<GpuBlockFetcher>> GpuBlockFetcher::Local(BlockStore* store,
                                                                        const void* pool,
                                                                        void* gpu_pool,
                                                                        int32_t max_blocks_per_job,
                                                                        cudaStream_t copy_stream) {
  std::unique_ptr<GpuBlockFetcher> f(new GpuBlockFetcher());
  f->store_ = store;
  f->pool_ = pool;
  f->gpu_pool_ = gpu_pool;
  f->block_bytes_ = store->block_bytes();
  f->max_blocks_per_job_ = max_blocks_per_job;
  f->copy_stream_ = copy_stream;
  // A job's source and destination lists share one entry; 8 entries in rotation.
  APR_RETURN_IF_ERROR(f->Init(8, 2 * max_blocks_per_job));
  return f;
}

absl::StatusOr<std::unique_ptr<GpuBlockFetcher>> GpuBlockFetcher::Remote(
    StagingTier* tier, void* gpu_pool, int32_t max_blocks_per_job, int32_t chunk_blocks,
    int32_t staging_chunks, cudaStream_t copy_stream) {
  if (chunk_blocks <= 0 || staging_chunks < 2) {
    return absl::InvalidArgumentError("remote GPU fetch needs chunk_blocks > 0 and >= 2 chunks");
  }
  std::unique_ptr<GpuBlockFetcher> f(new GpuBlockFetcher());
  f->tier_ = tier;
  f->gpu_pool_ = gpu_pool;
  f->block_bytes_ = tier->block_bytes();
  f->max_blocks_per_job_ = max_blocks_per_job;
  f->chunk_blocks_ = chunk_blocks;
  f->staging_chunks_ = staging_chunks;
  f->copy_stream_ = copy_stream;
  // One index entry per staging chunk (the chunk's destination slots).
  APR_RETURN_IF_ERROR(f->Init(staging_chunks, chunk_blocks));
  auto staging =
      HostRegion::Allocate(int64_t{staging_chunks} * chunk_blocks * f->block_bytes_, true);
  if (!staging.ok()) return staging.status();
  f->staging_ = *std::move(staging);
  auto mapped = MappedHostMemory::Register(f->staging_.data(), f->staging_.size());
  if (!mapped.ok()) return mapped.status();
  f->staging_mapped_ = *std::move(mapped);
  APR_RETURN_IF_ERROR(tier->RegisterStaging(f->staging_.data(), f->staging_.size()));
  f->thread_ = std::thread([p = f.get()] { p->FetchLoop(); });
  return f;
}

absl::Status GpuBlockFetcher::Init(int32_t entries, int32_t capacity) {
  APR_RETURN_IF_ERROR(CudaStatus(cudaGetDevice(&device_), "cudaGetDevice"));
  index_capacity_ = capacity;
  auto memory = HostRegion::Allocate(int64_t{entries} * capacity * sizeof(uint32_t), true);
  if (!memory.ok()) return memory.status();
  index_memory_ = *std::move(memory);
  auto mapped = MappedHostMemory::Register(index_memory_.data(), index_memory_.size());
  if (!mapped.ok()) return mapped.status();
  index_mapped_ = *std::move(mapped);
  index_events_.resize(entries);
  for (cudaEvent_t& e : index_events_) {
    APR_RETURN_IF_ERROR(
        CudaStatus(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate"));
  }
  return absl::OkStatus();
}

GpuBlockFetcher::~GpuBlockFetcher() {
  if (thread_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  if (copy_stream_ != nullptr) cudaStreamSynchronize(copy_stream_);
  for (cudaEvent_t e : index_events_) cudaEventDestroy(e);
  // The registrations go before the memory they cover (member order does the rest).
  index_mapped_.reset();
  staging_mapped_.reset();
  if (tier_ != nullptr && staging_.data() != nullptr) tier_->UnregisterStaging(staging_.data());
}

uint32_t* GpuBlockFetcher::IndexEntry(int64_t entry) const {
  return reinterpret_cast<uint32_t*>(index_memory_.data()) + entry * index_capacity_;
}

const uint32_t* GpuBlockFetcher::IndexEntryDevice(int64_t entry) const {
  return static_cast<const uint32_t*>(index_mapped_->device_pointer()) + entry * index_capacity_;
}

absl::StatusOr<std::shared_ptr<GpuFetchJob>> GpuBlockFetcher::Start(
    std::vector<uint32_t> tier_slots, std::vector<uint32_t> gpu_slots, cudaEvent_t after) {
  if (tier_slots.size() != gpu_slots.size() ||
      static_cast<int64_t>(tier_slots.size()) > max_blocks_per_job_) {
    return absl::InvalidArgumentError(
        absl::StrCat("a fetch of ", tier_slots.size(), " tier slots to ", gpu_slots.size(),
                     " GPU slots (at most ", max_blocks_per_job_, " per job)"));
  }
  auto job = std::make_shared<GpuFetchJob>();
  job->tier_slots = std::move(tier_slots);
  job->gpu_slots = std::move(gpu_slots);
  job->after = after;
  APR_RETURN_IF_ERROR(
      CudaStatus(cudaEventCreateWithFlags(&job->done, cudaEventDisableTiming), "cudaEventCreate"));
  const int32_t n = static_cast<int32_t>(job->tier_slots.size());
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.jobs;
    stats_.blocks += n;
    stats_.bytes += int64_t{n} * block_bytes_;
  }
  if (tier_ != nullptr) return Enqueue(std::move(job));

  // Local: the kernel reads the pool through its mapping.
  const int64_t entry = next_index_++ % static_cast<int64_t>(index_events_.size());
  APR_RETURN_IF_ERROR(CudaStatus(cudaEventSynchronize(index_events_[entry]),
                                 "waiting for an index list to be free"));
  uint32_t* idx = IndexEntry(entry);
  std::memcpy(idx, job->tier_slots.data(), sizeof(uint32_t) * n);
  std::memcpy(idx + n, job->gpu_slots.data(), sizeof(uint32_t) * n);
  if (after != nullptr) cudaStreamWaitEvent(copy_stream_, after, 0);
  const uint32_t* didx = IndexEntryDevice(entry);
  APR_RETURN_IF_ERROR(CudaStatus(
      LaunchGatherBlocks(pool_, didx, gpu_pool_, didx + n, n, block_bytes_, copy_stream_),
      "gather kernel (tier -> GPU)"));
  cudaEventRecord(index_events_[entry], copy_stream_);
  cudaEventRecord(job->done, copy_stream_);
  job->enqueued = true;
  return job;
}

absl::StatusOr<std::shared_ptr<GpuFetchJob>> GpuBlockFetcher::WriteBack(
    uint64_t seq, std::vector<BlockKey> keys, std::vector<uint32_t> gpu_slots, cudaEvent_t after) {
  if (keys.size() != gpu_slots.size() || static_cast<int64_t>(keys.size()) > max_blocks_per_job_) {
    return absl::InvalidArgumentError(absl::StrCat("a write-back of ", keys.size(), " blocks from ",
                                                   gpu_slots.size(), " GPU slots (at most ",
                                                   max_blocks_per_job_, " per job)"));
  }
  auto job = std::make_shared<GpuFetchJob>();
  job->kind = GpuFetchJob::Kind::kWriteBack;
  job->seq = seq;
  job->keys = std::move(keys);
  job->gpu_slots = std::move(gpu_slots);
  job->after = after;
  APR_RETURN_IF_ERROR(
      CudaStatus(cudaEventCreateWithFlags(&job->done, cudaEventDisableTiming), "cudaEventCreate"));
  if (tier_ != nullptr) return Enqueue(std::move(job));

  auto slots = store_->AllocateBlocks(seq, job->keys);
  if (!slots.ok()) return slots.status();
  job->tier_slots = *std::move(slots);
  const int32_t n = static_cast<int32_t>(job->keys.size());
  const int64_t entry = next_index_++ % static_cast<int64_t>(index_events_.size());
  APR_RETURN_IF_ERROR(CudaStatus(cudaEventSynchronize(index_events_[entry]),
                                 "waiting for an index list to be free"));
  uint32_t* idx = IndexEntry(entry);
  std::memcpy(idx, job->gpu_slots.data(), sizeof(uint32_t) * n);
  std::memcpy(idx + n, job->tier_slots.data(), sizeof(uint32_t) * n);
  if (after != nullptr) cudaStreamWaitEvent(copy_stream_, after, 0);
  const uint32_t* didx = IndexEntryDevice(entry);
  // GPU slots -> the mapped pool (posted writes over PCIe).
  APR_RETURN_IF_ERROR(CudaStatus(LaunchGatherBlocks(gpu_pool_, didx, const_cast<void*>(pool_),
                                                    didx + n, n, block_bytes_, copy_stream_),
                                 "gather kernel (GPU -> tier, write-back)"));
  cudaEventRecord(index_events_[entry], copy_stream_);
  cudaEventRecord(job->done, copy_stream_);
  job->enqueued = true;
  return job;
}

absl::StatusOr<std::shared_ptr<GpuFetchJob>> GpuBlockFetcher::Enqueue(
    std::shared_ptr<GpuFetchJob> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(job);
  }
  cv_.notify_all();
  return job;
}

void GpuBlockFetcher::FetchLoop() {
  cudaSetDevice(device_);
  for (;;) {
    std::shared_ptr<GpuFetchJob> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      job = queue_.front();
      queue_.pop_front();
    }
    absl::Status s =
        job->kind == GpuFetchJob::Kind::kFetch ? RunRemoteFetch(*job) : RunRemoteWriteBack(*job);
    {
      std::lock_guard<std::mutex> lock(mu_);
      job->status = s;
      job->enqueued = true;
    }
    cv_.notify_all();
  }
}

absl::Status GpuBlockFetcher::RunRemoteFetch(GpuFetchJob& job) {
  if (job.after != nullptr) cudaStreamWaitEvent(copy_stream_, job.after, 0);
  const int64_t n = static_cast<int64_t>(job.tier_slots.size());
  const int64_t chunks = (n + chunk_blocks_ - 1) / chunk_blocks_;
  struct InFlight {
    ReadId id;
    int64_t ring, first, count;
  };
  std::deque<InFlight> in_flight;
  const auto* staging_device = static_cast<const std::byte*>(staging_mapped_->device_pointer());
  int64_t issued = 0;
  while (issued < chunks || !in_flight.empty()) {
    // Keep every staging chunk busy: gets of later chunks overlap this chunk's copy.
    while (issued < chunks && static_cast<int64_t>(in_flight.size()) < staging_chunks_) {
      const int64_t ring = next_chunk_++ % staging_chunks_;
      APR_RETURN_IF_ERROR(CudaStatus(cudaEventSynchronize(index_events_[ring]),
                                     "waiting for a staging chunk to be free"));
      const int64_t first = issued * chunk_blocks_,
                    count = std::min<int64_t>(chunk_blocks_, n - first);
      std::vector<std::byte*> dst(count);
      for (int64_t k = 0; k < count; ++k) {
        dst[k] = staging_.data() + (ring * chunk_blocks_ + k) * block_bytes_;
      }
      auto id = tier_->StartRead(absl::MakeConstSpan(job.tier_slots).subspan(first, count), dst);
      if (!id.ok()) return id.status();
      in_flight.push_back({*id, ring, first, count});
      ++issued;
    }
    const InFlight c = in_flight.front();
    in_flight.pop_front();
    if (absl::Status s = tier_->WaitRead(c.id); !s.ok()) {
      for (const InFlight& rest : in_flight) tier_->WaitRead(rest.id).IgnoreError();
      return s;
    }
    std::memcpy(IndexEntry(c.ring), job.gpu_slots.data() + c.first, sizeof(uint32_t) * c.count);
    APR_RETURN_IF_ERROR(
        CudaStatus(LaunchGatherBlocks(staging_device + c.ring * chunk_blocks_ * block_bytes_,
                                      nullptr, gpu_pool_, IndexEntryDevice(c.ring),
                                      static_cast<int32_t>(c.count), block_bytes_, copy_stream_),
                   "gather kernel (staging -> GPU)"));
    cudaEventRecord(index_events_[c.ring], copy_stream_);
  }
  return CudaStatus(cudaEventRecord(job.done, copy_stream_), "cudaEventRecord");
}

absl::Status GpuBlockFetcher::RunRemoteWriteBack(GpuFetchJob& job) {
  if (job.after != nullptr) cudaStreamWaitEvent(copy_stream_, job.after, 0);
  const int64_t n = static_cast<int64_t>(job.keys.size());
  auto* staging_device = static_cast<std::byte*>(staging_mapped_->device_pointer());
  std::vector<const std::byte*> data;
  for (int64_t first = 0; first < n; first += chunk_blocks_) {
    const int64_t count = std::min<int64_t>(chunk_blocks_, n - first);
    const int64_t ring = next_chunk_++ % staging_chunks_;
    APR_RETURN_IF_ERROR(CudaStatus(cudaEventSynchronize(index_events_[ring]),
                                   "waiting for a staging chunk to be free"));
    std::memcpy(IndexEntry(ring), job.gpu_slots.data() + first, sizeof(uint32_t) * count);
    APR_RETURN_IF_ERROR(
        CudaStatus(LaunchGatherBlocks(gpu_pool_, IndexEntryDevice(ring),
                                      staging_device + ring * chunk_blocks_ * block_bytes_, nullptr,
                                      static_cast<int32_t>(count), block_bytes_, copy_stream_),
                   "gather kernel (GPU -> staging, write-back)"));
    cudaEventRecord(index_events_[ring], copy_stream_);
    APR_RETURN_IF_ERROR(
        CudaStatus(cudaEventSynchronize(index_events_[ring]), "write-back copy to staging"));
    std::vector<const std::byte*> ptrs(count);
    for (int64_t k = 0; k < count; ++k) {
      ptrs[k] = staging_.data() + (ring * chunk_blocks_ + k) * block_bytes_;
    }
    auto slots =
        tier_->WriteBlocks(job.seq, absl::MakeConstSpan(job.keys).subspan(first, count), ptrs);
    if (!slots.ok()) return slots.status();
    job.tier_slots.insert(job.tier_slots.end(), slots->begin(), slots->end());
  }
  return CudaStatus(cudaEventRecord(job.done, copy_stream_), "cudaEventRecord");
}

absl::Status GpuBlockFetcher::StreamWait(const std::shared_ptr<GpuFetchJob>& job,
                                         cudaStream_t stream) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!job->enqueued) {
      ++stats_.host_stalls;
      const absl::Time t0 = absl::Now();
      cv_.wait(lock, [&] { return job->enqueued; });
      stats_.host_stall_seconds += absl::ToDoubleSeconds(absl::Now() - t0);
    }
    if (!job->status.ok()) return job->status;
    if (cudaEventQuery(job->done) == cudaErrorNotReady) ++stats_.gpu_not_ready;
  }
  return CudaStatus(cudaStreamWaitEvent(stream, job->done, 0), "cudaStreamWaitEvent");
}

absl::Status GpuBlockFetcher::Wait(const std::shared_ptr<GpuFetchJob>& job) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return job->enqueued; });
    if (!job->status.ok()) return job->status;
  }
  return CudaStatus(cudaEventSynchronize(job->done), "waiting for a GPU fetch");
}

GpuFetchStats GpuBlockFetcher::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace apr::kvstore
