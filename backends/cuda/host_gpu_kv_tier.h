// GpuKvTier over a pinned block pool in this process (KvPlacement::kHost): the GPU reads
// and writes it through its mapping with gather kernels on a copy stream, so a whole
// decode step, its fetches included, is device work and can be replayed as a graph.
#ifndef APRUNTIME_BACKENDS_CUDA_HOST_GPU_KV_TIER_H_
#define APRUNTIME_BACKENDS_CUDA_HOST_GPU_KV_TIER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "backends/cuda/gpu_kv_tier.h"
#include "backends/cuda/offload.h"

namespace apr::cuda {

class HostGpuKvTier : public GpuKvTier {
 public:
  explicit HostGpuKvTier(std::shared_ptr<LocalKvTier> pool) : pool_(std::move(pool)) {}
  ~HostGpuKvTier() override;

  bool needs_write_back_area() const override { return false; }
  absl::Status Bind(const GpuCacheBinding& cache) override;
  bool replayable() const override { return true; }
  bool writes_back_on_device() const override { return true; }
  void* write_back_destination() const override { return host_pool(); }

  absl::Status CreateSequence(uint64_t id, int layers, int kv_heads) override;
  void FreeSequence(uint64_t id) override;
  absl::StatusOr<std::vector<uint32_t>> WriteBlocks(uint64_t id,
                                                    const std::vector<kvstore::BlockKey>& keys,
                                                    const std::vector<uint32_t>& src,
                                                    const __nv_bfloat16* staging) override;
  absl::StatusOr<std::vector<uint32_t>> AllocateBlocks(
      uint64_t id, const std::vector<kvstore::BlockKey>& keys) override;
  absl::Status ReadBlock(uint32_t slot, std::byte* out) override;
  absl::Status FillRandom(uint64_t seed) override;

  absl::Status StartFetches(int first, int count, cudaStream_t plan_stream, bool eager) override;
  absl::Status WaitFetch(int layer, bool eager) override;
  absl::Status JoinStepFetches(bool eager) override;
  absl::Status FetchOnCompute(int layer) override;
  absl::Status FetchListOnCompute(const uint32_t* src, const uint32_t* dst, const int32_t* count,
                                  int max_count) override;
  absl::Status Drain() override;

  void BeginStep() override {}
  absl::Status PlanWriteBack(int seq_slot, uint64_t id, int block, uint32_t* row) override;
  absl::Status AfterStep(int64_t) override { return absl::OkStatus(); }
  absl::StatusOr<int64_t> CompleteWriteBacks(int, int64_t) override { return 0; }
  void DropWriteBacks(int) override {}
  void AddStats(OffloadStats*) const override {}

 private:
  void* host_pool() const { return pool_->mapped->device_pointer(); }

  std::shared_ptr<LocalKvTier> pool_;
  GpuCacheBinding c_;
  cudaStream_t copy_stream_ = nullptr;
  // Per layer: the plan done (the copy stream starts after it), the fetch done (eager
  // steps wait for it); a captured step joins the copy stream at its end.
  std::vector<cudaEvent_t> plan_events_, fetch_events_;
  cudaEvent_t copy_join_ = nullptr;
};

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_HOST_GPU_KV_TIER_H_
