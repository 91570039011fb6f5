// GpuKvTier over storage nodes (KvPlacement::kRemote): UCX gets into pinned staging, then
// to the GPU block cache (kvstore::GpuBlockFetcher), with the client the CPU worker uses
// (one node, or several sharded or replicated: kvstore::ConnectStorageNodes). The host
// takes part in every step: a thread turns each layer's fetch list, copied to pinned
// memory after the plan, into a fetcher job; so decode steps run eagerly (not replayable).
// With two copies, a lost copy is restored when its nodes answer again, before a new
// sequence is created (kvstore::CopyRestorer, as the CPU worker does).
#ifndef APRUNTIME_BACKENDS_CUDA_REMOTE_GPU_KV_TIER_H_
#define APRUNTIME_BACKENDS_CUDA_REMOTE_GPU_KV_TIER_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "backends/cuda/device_buffer.h"
#include "backends/cuda/gpu_kv_tier.h"
#include "backends/cuda/offload.h"
#include "kvstore/client/copy_restorer.h"
#include "kvstore/client/staging_tier.h"
#include "kvstore/cuda/gpu_fetcher.h"

namespace apr::cuda {

class RemoteGpuKvTier : public GpuKvTier {
 public:
  // `restorer`: for nodes holding two copies, null otherwise (or a tier given ready-made).
  RemoteGpuKvTier(std::shared_ptr<kvstore::StagingTier> nodes, const OffloadOptions& options,
                  std::unique_ptr<kvstore::CopyRestorer> restorer = nullptr)
      : nodes_(std::move(nodes)),
        restorer_(std::move(restorer)),
        chunk_blocks_(options.remote_chunk_blocks),
        staging_chunks_(options.remote_staging_chunks) {}
  ~RemoteGpuKvTier() override;

  bool needs_write_back_area() const override { return true; }
  absl::Status Bind(const GpuCacheBinding& cache) override;
  bool replayable() const override { return false; }
  bool writes_back_on_device() const override { return false; }
  void* write_back_destination() const override { return c_.pool; }

  absl::Status CreateSequence(uint64_t id, int layers, int kv_heads) override;
  void FreeSequence(uint64_t id) override;
  absl::StatusOr<std::vector<uint32_t>> WriteBlocks(uint64_t id,
                                                    const std::vector<kvstore::BlockKey>& keys,
                                                    const std::vector<uint32_t>& src,
                                                    const __nv_bfloat16* staging) override;
  absl::StatusOr<std::vector<uint32_t>> AllocateBlocks(
      uint64_t id, const std::vector<kvstore::BlockKey>& keys) override;
  absl::Status ReadBlock(uint32_t slot, std::byte* out) override;
  absl::Status FillRandom(uint64_t) override { return absl::OkStatus(); }

  absl::Status StartFetches(int first, int count, cudaStream_t plan_stream, bool eager) override;
  absl::Status WaitFetch(int layer, bool eager) override;
  absl::Status JoinStepFetches(bool) override { return absl::OkStatus(); }
  absl::Status FetchOnCompute(int layer) override;
  absl::Status FetchListOnCompute(const uint32_t*, const uint32_t*, const int32_t*, int) override;
  absl::Status Drain() override;

  void BeginStep() override { fills_.clear(); }
  absl::Status PlanWriteBack(int seq_slot, uint64_t id, int block, uint32_t* row) override;
  absl::Status AfterStep(int64_t step) override;
  absl::StatusOr<int64_t> CompleteWriteBacks(int seq_slot, int64_t up_to_step) override;
  void DropWriteBacks(int seq_slot) override { write_backs_[seq_slot].clear(); }
  void AddStats(OffloadStats* stats) const override;

 private:
  // Layer l's fetch count and lists to pinned memory (on `stream`), then its plan event.
  absl::Status CopyFetchListToHost(int layer, cudaStream_t stream);
  // The thread is told to start the jobs of layers [first, first + count).
  void PostFetches(int first, int count);
  void FetchLoop();
  // Waits for every job started, marking each done on the compute stream.
  absl::Status DrainFetches();
  absl::Status FirstError();

  std::shared_ptr<kvstore::StagingTier> nodes_;
  std::unique_ptr<kvstore::CopyRestorer> restorer_;
  int chunk_blocks_, staging_chunks_;
  GpuCacheBinding c_;
  std::unique_ptr<kvstore::GpuBlockFetcher> fetcher_;
  cudaStream_t copy_stream_ = nullptr, mark_stream_ = nullptr;
  std::vector<cudaEvent_t> plan_events_, mark_events_;
  PinnedBuffer<uint32_t> h_fetch_;  // [layers][2][max_fetch]
  PinnedBuffer<int32_t> h_fetch_count_;
  // The fetch thread: layers posted, and per layer the jobs started for plans not yet
  // waited for (null: nothing to fetch).
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<int> queue_;
  std::vector<std::deque<std::shared_ptr<kvstore::GpuFetchJob>>> pending_;
  std::vector<int64_t> posted_, started_;
  absl::Status error_;
  bool stop_ = false;
  // Blocks the step in flight fills: (sequence slot, tier id, block).
  struct Fill {
    int seq_slot;
    uint64_t id;
    int block;
  };
  std::vector<Fill> fills_;
  struct WriteBack {
    std::shared_ptr<kvstore::GpuFetchJob> job;
    int block;
    int64_t step;  // decoder step counter when it started
  };
  std::vector<std::vector<WriteBack>> write_backs_;  // per sequence slot
};

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_REMOTE_GPU_KV_TIER_H_
