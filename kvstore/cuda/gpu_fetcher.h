// Moves blocks between the storage tier and a pool of slots in GPU memory, on a copy
// stream, so that a decode step can fetch layer l's blocks for step t + 1 right after
// layer l's attention at step t and let step t + 1 wait on that fetch only.
//
// Local mode (the tier's pool is in this process, registered mapped): one gather kernel
// reads the selected slots straight from pinned host memory into GPU slots.
// Remote mode (one storage node, or several sharded: any StagingTier): a fetch thread
// issues UCX gets of a job's slots into pinned staging in chunks and, as each chunk lands,
// launches the gather kernel from the staging chunk into the GPU slots; the next chunk's
// gets overlap this chunk's copy.
//
// Completion: StreamWait() makes a stream wait for a job (cudaStreamWaitEvent). It counts
// a stall when the job was not complete at that moment (the step waits; it never skips).
#ifndef APRUNTIME_KVSTORE_CUDA_GPU_FETCHER_H_
#define APRUNTIME_KVSTORE_CUDA_GPU_FETCHER_H_

#include <cuda_runtime_api.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "kvstore/block_store.h"
#include "kvstore/client/staging_tier.h"
#include "kvstore/cuda/host_register.h"
#include "kvstore/host_memory.h"

namespace apr::kvstore {

struct GpuFetchStats {
  int64_t jobs = 0;
  int64_t blocks = 0;
  int64_t bytes = 0;
  int64_t gpu_not_ready = 0;  // StreamWait found the copy still running (the stream waits)
  int64_t host_stalls = 0;    // StreamWait had to wait for a remote job's gets (host waits)
  double host_stall_seconds = 0;
};

// A job in flight; pass it to StreamWait. Opaque.
struct GpuFetchJob;

class GpuBlockFetcher {
 public:
  // Local mode. `pool` is the tier's pool as the GPU sees it (MappedHostMemory's device
  // pointer); `gpu_pool` the destination pool in GPU memory. Jobs carry at most
  // `max_blocks_per_job` blocks.
  // `store` (not owned) is the pool's BlockStore, for write-back slot allocation.
  static absl::StatusOr<std::unique_ptr<GpuBlockFetcher>> Local(BlockStore* store, const void* pool,
                                                                void* gpu_pool,
                                                                int32_t max_blocks_per_job,
                                                                cudaStream_t copy_stream);
  // Remote mode over `tier` (not owned): a RemoteTier, or a ShardedTier over several. Staging holds
  // `staging_chunks` chunks of `chunk_blocks` blocks, registered with UCX and mapped for the GPU.
  static absl::StatusOr<std::unique_ptr<GpuBlockFetcher>> Remote(StagingTier* tier, void* gpu_pool,
                                                                 int32_t max_blocks_per_job,
                                                                 int32_t chunk_blocks,
                                                                 int32_t staging_chunks,
                                                                 cudaStream_t copy_stream);
  ~GpuBlockFetcher();

  // Starts copying tier slot `tier_slots[i]` to GPU slot `gpu_slots[i]`. Local mode
  // enqueues the kernel before returning; remote mode hands the job to the fetch thread.
  // The copy stream first waits for `after` (may be null): the event after which the
  // destination slots are free (the attention that last read them). In remote mode the
  // fetch thread enqueues that wait later, so `after` must not be recorded again until
  // StreamWait() or Wait() has returned for this job (the decode step's order gives that:
  // layer l's next attention, which re-records it, waits for this job first).
  absl::StatusOr<std::shared_ptr<GpuFetchJob>> Start(std::vector<uint32_t> tier_slots,
                                                     std::vector<uint32_t> gpu_slots,
                                                     cudaEvent_t after = nullptr);
  // Makes `stream` wait for the job; the job's error, if it failed.
  absl::Status StreamWait(const std::shared_ptr<GpuFetchJob>& job, cudaStream_t stream);
  // Waits on the host for the job's copies; the job's error, if it failed.
  absl::Status Wait(const std::shared_ptr<GpuFetchJob>& job);

  // Write-back of blocks that filled on the GPU: GPU slot `gpu_slots[i]` becomes block
  // `keys[i]` of tier sequence `seq`, after `after` (the kernel that wrote the slots).
  // Local mode allocates the tier slots now and enqueues the copy into the mapped pool;
  // remote mode, on the fetch thread, copies to staging and stores the blocks with
  // TierClient::WriteBlocks (AppendBlocks + UCX puts). Once the job is complete (Wait),
  // tier_slots() holds where they went.
  absl::StatusOr<std::shared_ptr<GpuFetchJob>> WriteBack(uint64_t seq, std::vector<BlockKey> keys,
                                                         std::vector<uint32_t> gpu_slots,
                                                         cudaEvent_t after = nullptr);
  // The tier slots of a completed write-back job.
  static const std::vector<uint32_t>& tier_slots(const GpuFetchJob& job);

  GpuFetchStats stats() const;
  int64_t block_bytes() const { return block_bytes_; }

 private:
  GpuBlockFetcher() = default;
  absl::Status Init(int32_t index_entries, int32_t entry_capacity);
  uint32_t* IndexEntry(int64_t entry) const;
  const uint32_t* IndexEntryDevice(int64_t entry) const;
  void FetchLoop();
  absl::Status RunRemoteFetch(GpuFetchJob& job);
  absl::Status RunRemoteWriteBack(GpuFetchJob& job);
  absl::StatusOr<std::shared_ptr<GpuFetchJob>> Enqueue(std::shared_ptr<GpuFetchJob> job);

  cudaStream_t copy_stream_ = nullptr;
  int64_t block_bytes_ = 0;
  int32_t max_blocks_per_job_ = 0;
  int device_ = 0;
  BlockStore* store_ = nullptr;  // local mode
  const void* pool_ = nullptr;
  void* gpu_pool_ = nullptr;
  StagingTier* tier_ = nullptr;  // remote mode
  int32_t chunk_blocks_ = 0;
  int32_t staging_chunks_ = 0;

  // Mapped pinned ring of index lists the kernels read ([entries][capacity] uint32), each
  // entry reusable once the event of the kernel that read it has completed.
  HostRegion index_memory_;
  std::unique_ptr<MappedHostMemory> index_mapped_;
  std::vector<cudaEvent_t> index_events_;
  int32_t index_capacity_ = 0;
  int64_t next_index_ = 0;
  // Remote mode: staging chunks, their events.
  HostRegion staging_;
  std::unique_ptr<MappedHostMemory> staging_mapped_;
  std::vector<cudaEvent_t> staging_events_;
  int64_t next_chunk_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<GpuFetchJob>> queue_;
  bool stop_ = false;
  std::thread thread_;
  GpuFetchStats stats_;
};

}  // namespace apr::kvstore

#endif  // APRUNTIME_KVSTORE_CUDA_GPU_FETCHER_H_
