// The host tier's copies (docs/CUDA.md "KV offload"): fetches and write-backs are gather
// kernels between the mapped host pool and the GPU block cache.
#include "backends/cuda/host_gpu_kv_tier.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/device_alloc.h"
#include "backends/cuda/device_buffer.h"
#include "backends/cuda/fill.h"
#include "backends/cuda/offload_kernels.h"
#include "kvstore/cuda/gather_blocks.h"

namespace apr::cuda {

absl::StatusOr<std::shared_ptr<LocalKvTier>> LocalKvTier::Create(int64_t block_bytes,
                                                                 int64_t capacity_blocks) {
  auto t = std::make_shared<LocalKvTier>();
  auto store = kvstore::BlockStore::Create(
      {.block_bytes = block_bytes, .capacity_blocks = capacity_blocks, .populate = true});
  if (!store.ok()) return store.status();
  t->store = *std::move(store);
  auto mapped = kvstore::MappedHostMemory::Register(t->store->base(), t->store->region_bytes());
  if (!mapped.ok()) return mapped.status();
  t->mapped = *std::move(mapped);
  return t;
}

HostGpuKvTier::~HostGpuKvTier() {
  if (copy_stream_ != nullptr) cudaStreamSynchronize(copy_stream_);
  DestroyEvents(&plan_events_);
  DestroyEvents(&fetch_events_);
  if (copy_join_ != nullptr) cudaEventDestroy(copy_join_);
  if (copy_stream_ != nullptr) cudaStreamDestroy(copy_stream_);
}

absl::Status HostGpuKvTier::Bind(const GpuCacheBinding& cache) {
  c_ = cache;
  APR_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
  APR_RETURN_IF_ERROR(CreateEvents(c_.layers, &plan_events_));
  APR_RETURN_IF_ERROR(CreateEvents(c_.layers, &fetch_events_));
  APR_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&copy_join_, cudaEventDisableTiming));
  return absl::OkStatus();
}

absl::Status HostGpuKvTier::CreateSequence(uint64_t id, int layers, int kv_heads) {
  return pool_->store->CreateSequence(id, layers, kv_heads);
}

void HostGpuKvTier::FreeSequence(uint64_t id) { pool_->store->FreeSequence(id).IgnoreError(); }

// Slots from the pinned pool, the bytes gathered into it through its mapping.
absl::StatusOr<std::vector<uint32_t>> HostGpuKvTier::WriteBlocks(
    uint64_t id, const std::vector<kvstore::BlockKey>& keys, const std::vector<uint32_t>& src,
    const __nv_bfloat16* staging) {
  const int64_t n = static_cast<int64_t>(keys.size());
  auto slots = pool_->store->AllocateBlocks(id, keys);
  if (!slots.ok()) return slots.status();
  DeviceBuffer<uint32_t> lists;
  APR_RETURN_IF_ERROR(AllocZ(&lists, 2 * n, 0));
  APR_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(lists.get(), src.data(), n * sizeof(uint32_t), cudaMemcpyHostToDevice));
  APR_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(lists.get() + n, slots->data(), n * sizeof(uint32_t), cudaMemcpyHostToDevice));
  APR_CUDA_RETURN_IF_ERROR(kvstore::LaunchGatherBlocks(staging, lists.get(), host_pool(),
                                                       lists.get() + n, static_cast<int32_t>(n),
                                                       c_.block_bytes, c_.compute));
  APR_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(c_.compute));  // before lists is freed
  return slots;
}

absl::StatusOr<std::vector<uint32_t>> HostGpuKvTier::AllocateBlocks(
    uint64_t id, const std::vector<kvstore::BlockKey>& keys) {
  return pool_->store->AllocateBlocks(id, keys);
}

absl::Status HostGpuKvTier::ReadBlock(uint32_t slot, std::byte* out) {
  std::memcpy(out, pool_->store->slot_data(slot), c_.block_bytes);
  return absl::OkStatus();
}

// Written through the mapping (over PCIe).
absl::Status HostGpuKvTier::FillRandom(uint64_t seed) {
  APR_CUDA_RETURN_IF_ERROR(FillUniformBf16(static_cast<__nv_bfloat16*>(host_pool()),
                                           static_cast<int64_t>(pool_->store->region_bytes() / 2),
                                           seed, 1.0f, c_.compute));
  return absl::OkStatus();
}

// The copy stream fetches from the mapped pool once the plan has run; per layer it marks
// the fetch done, then writes back the block the step filled (the eager event follows the
// write-back: the next step's memset of the counts must not overtake it).
absl::Status HostGpuKvTier::StartFetches(int first, int count, cudaStream_t plan_stream,
                                         bool eager) {
  APR_CUDA_RETURN_IF_ERROR(cudaEventRecord(plan_events_[first], plan_stream));
  APR_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(copy_stream_, plan_events_[first], 0));
  APR_CUDA_RETURN_IF_ERROR(LaunchSpin(c_.debug_fetch_delay_us, copy_stream_));
  for (int l = first; l < first + count; ++l) {
    const int64_t f = int64_t{l} * c_.max_fetch, w = int64_t{l} * c_.max_wb;
    APR_CUDA_RETURN_IF_ERROR(kvstore::LaunchGatherBlocksCounted(
        host_pool(), c_.fetch_src + f, c_.pool, c_.fetch_dst + f, c_.fetch_count + l, c_.max_fetch,
        c_.block_bytes, c_.fetch_ctas, copy_stream_));
    APR_CUDA_RETURN_IF_ERROR(LaunchMarkFetched(c_.done, l, copy_stream_));
    APR_CUDA_RETURN_IF_ERROR(kvstore::LaunchGatherBlocksCounted(
        c_.pool, c_.wb_src + w, host_pool(), c_.wb_dst + w, c_.wb_count + l, c_.max_wb,
        c_.block_bytes, 0, copy_stream_));
    if (eager) APR_CUDA_RETURN_IF_ERROR(cudaEventRecord(fetch_events_[l], copy_stream_));
  }
  return absl::OkStatus();
}

absl::Status HostGpuKvTier::WaitFetch(int l, bool eager) {
  if (!eager) return absl::OkStatus();  // graphs: the previous step joined its fetches
  APR_CUDA_RETURN_IF_ERROR(LaunchStallProbe(c_.issued, c_.done, l, 1, c_.counters, c_.compute));
  APR_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(c_.compute, fetch_events_[l], 0));
  return absl::OkStatus();
}

// A captured step must rejoin the copy stream: the fetches for the next step complete
// within this one. Stalls: the layers whose fetch is not done when the compute stream
// gets here.
absl::Status HostGpuKvTier::JoinStepFetches(bool eager) {
  if (eager) return absl::OkStatus();
  APR_CUDA_RETURN_IF_ERROR(LaunchStallProbe(c_.issued, c_.done, c_.first_fetched_layer,
                                            c_.layers - c_.first_fetched_layer, c_.counters,
                                            c_.compute));
  APR_CUDA_RETURN_IF_ERROR(cudaEventRecord(copy_join_, copy_stream_));
  APR_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(c_.compute, copy_join_, 0));
  return absl::OkStatus();
}

absl::Status HostGpuKvTier::FetchOnCompute(int l) {
  const int64_t f = int64_t{l} * c_.max_fetch;
  APR_CUDA_RETURN_IF_ERROR(kvstore::LaunchGatherBlocksCounted(
      host_pool(), c_.fetch_src + f, c_.pool, c_.fetch_dst + f, c_.fetch_count + l, c_.max_fetch,
      c_.block_bytes, 0, c_.compute));
  APR_CUDA_RETURN_IF_ERROR(LaunchMarkFetched(c_.done, l, c_.compute));
  return absl::OkStatus();
}

absl::Status HostGpuKvTier::FetchListOnCompute(const uint32_t* src, const uint32_t* dst,
                                               const int32_t* count, int max_count) {
  APR_CUDA_RETURN_IF_ERROR(kvstore::LaunchGatherBlocksCounted(
      host_pool(), src, c_.pool, dst, count, max_count, c_.block_bytes, c_.fetch_ctas, c_.compute));
  return absl::OkStatus();
}

absl::Status HostGpuKvTier::Drain() {
  APR_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(copy_stream_));
  return absl::OkStatus();
}

// Slots allocated now; the copy stream writes the block there after the layer's attention.
absl::Status HostGpuKvTier::PlanWriteBack(int, uint64_t id, int block, uint32_t* row) {
  std::vector<kvstore::BlockKey> keys;
  keys.reserve(c_.layers * c_.kv_heads);
  for (int l = 0; l < c_.layers; ++l)
    for (int g = 0; g < c_.kv_heads; ++g) keys.push_back({l, g, block});
  auto slots = pool_->store->AllocateBlocks(id, keys);
  if (!slots.ok()) return slots.status();
  std::copy(slots->begin(), slots->end(), row);
  return absl::OkStatus();
}

}  // namespace apr::cuda
