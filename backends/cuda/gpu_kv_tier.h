// The storage tier behind an offloaded CudaDecoder (docs/CUDA.md "KV offload"): where the
// complete blocks of every sequence live, and how the fetch lists that the decoder's plan
// kernel writes become copies into its GPU block cache. One interface, two implementations:
// HostGpuKvTier (a pinned pool in this process, read and written by gather kernels through
// its mapping) and RemoteGpuKvTier (storage nodes over UCX, through the same client stack
// as the CPU worker: kvstore::ConnectStorageNodes). The resident placement has no tier: its
// slot pool holds every block and a step plans nothing (docs/DESIGN.md section 4).
//
// The decoder owns the block cache (pool, maps, plan lists, counters) and the order of a
// step; the tier owns its streams, events and host state, and sees the decoder's buffers
// through a GpuCacheBinding.
#ifndef APRUNTIME_BACKENDS_CUDA_GPU_KV_TIER_H_
#define APRUNTIME_BACKENDS_CUDA_GPU_KV_TIER_H_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "backends/cuda/offload.h"
#include "kvstore/block_store.h"

namespace apr::cuda {

// The decoder's GPU block cache as the tier's copies see it. Lists are per layer:
// layer l's fetch list is fetch_src/fetch_dst[l * max_fetch, + fetch_count[l]).
struct GpuCacheBinding {
  int device = 0;
  int layers = 0, kv_heads = 0, max_blocks = 0, max_sequences = 0;
  int64_t block_bytes = 0;
  __nv_bfloat16* pool = nullptr;
  // First slot of the write-back area (after the cache; only a tier that stores filled
  // blocks from the host has one: needs_write_back_area).
  int64_t write_back_area = 0;
  // [sequence slot][max_blocks][layers][kv_heads] tier slots (kNoTierSlot: none).
  uint32_t* tier_table = nullptr;
  const uint32_t *fetch_src = nullptr, *fetch_dst = nullptr;
  const int32_t* fetch_count = nullptr;
  int max_fetch = 0;
  const uint32_t *wb_src = nullptr, *wb_dst = nullptr;
  const int32_t* wb_count = nullptr;
  int max_wb = 0;
  // Layers before this one are dense and resident: they fetch nothing.
  int first_fetched_layer = 0;
  // Per layer, fetches issued (by the plan) and done (marked by the tier); the stall
  // probe compares them and counts into counters (offload_kernels.h).
  const int32_t* issued = nullptr;
  int32_t* done = nullptr;
  unsigned long long* counters = nullptr;
  cudaStream_t compute = nullptr;  // the decoder's stream
  int fetch_ctas = 0;              // gather CTAs (0: the kernel's default)
  int debug_fetch_delay_us = 0;    // OffloadOptions::debug_fetch_delay_us
};

class GpuKvTier {
 public:
  virtual ~GpuKvTier() = default;

  // --- Setup. ---
  // Whether the filled blocks of a decode step go through a GPU write-back area (one slot
  // per (sequence, layer, KV head) after the cache) rather than straight to the tier.
  virtual bool needs_write_back_area() const = 0;
  // Creates the tier's streams, events and copy engine over the decoder's cache.
  virtual absl::Status Bind(const GpuCacheBinding& cache) = 0;
  // Whether a decode step's device work, the tier's copies included, can be captured and
  // replayed as a CUDA graph (false: the host takes part in every step's fetches).
  virtual bool replayable() const = 0;
  // Whether the step's write-backs are device copies into the tier (the plan kernel
  // records their slots and counts them; kCounterWrittenBack) rather than stored from the
  // write-back area by the host after the step (AfterStep).
  virtual bool writes_back_on_device() const = 0;
  // Where a step's filled blocks are copied (dense layers' write-back kernel): the tier's
  // pool as the GPU sees it, or the decoder's pool (its write-back area).
  virtual void* write_back_destination() const = 0;

  // --- Sequences and their complete blocks. ---
  virtual absl::Status CreateSequence(uint64_t id, int layers, int kv_heads) = 0;
  virtual void FreeSequence(uint64_t id) = 0;
  // Stores the blocks `keys` (table by table, blocks ascending), their bytes in the GPU
  // staging pool's slots `src`; returns their tier slots in the keys' order.
  virtual absl::StatusOr<std::vector<uint32_t>> WriteBlocks(
      uint64_t id, const std::vector<kvstore::BlockKey>& keys, const std::vector<uint32_t>& src,
      const __nv_bfloat16* staging) = 0;
  // Slots only, contents left as they are (the benchmark's random contexts).
  virtual absl::StatusOr<std::vector<uint32_t>> AllocateBlocks(
      uint64_t id, const std::vector<kvstore::BlockKey>& keys) = 0;
  // One block's bytes (block_bytes) from tier slot `slot`.
  virtual absl::Status ReadBlock(uint32_t slot, std::byte* out) = 0;
  // Fills the tier's pool with random bf16 values, where it is in this process (the
  // benchmark's random contexts); a remote tier's blocks keep what they hold.
  virtual absl::Status FillRandom(uint64_t seed) = 0;

  // --- A decode step. ---
  // After the plan of layers [first, first + count) on `plan_stream`: starts their fetches
  // (and the write-back of the blocks the step fills). `eager`: not captured.
  virtual absl::Status StartFetches(int first, int count, cudaStream_t plan_stream, bool eager) = 0;
  // Before layer l's attention: the compute stream waits for its fetch.
  virtual absl::Status WaitFetch(int layer, bool eager) = 0;
  // After the last layer: a captured step joins the fetches it started.
  virtual absl::Status JoinStepFetches(bool eager) = 0;
  // A fetch of layer l planned on the compute stream, done before anything after it
  // (a sequence's first step; Drain completes it).
  virtual absl::Status FetchOnCompute(int layer) = 0;
  // predictor-hybrid: a counted fetch list of the current layer, on the compute stream.
  virtual absl::Status FetchListOnCompute(const uint32_t* src, const uint32_t* dst,
                                          const int32_t* count, int max_count) = 0;
  // Waits for every fetch and copy in flight.
  virtual absl::Status Drain() = 0;

  // --- Write-backs between steps. ---
  // Before the step: drops the previous step's fills.
  virtual void BeginStep() = 0;
  // The step's token completes block `block` of the sequence in slot `seq_slot`: `row`
  // ([layers][kv_heads]) receives the slots its bytes are copied to.
  virtual absl::Status PlanWriteBack(int seq_slot, uint64_t id, int block, uint32_t* row) = 0;
  // After the step (complete): stores what the host stores; `step` is the decoder's step.
  virtual absl::Status AfterStep(int64_t step) = 0;
  // Completes the sequence's write-backs started at or before `up_to_step` (their tier
  // slots into the tier table); returns the blocks stored.
  virtual absl::StatusOr<int64_t> CompleteWriteBacks(int seq_slot, int64_t up_to_step) = 0;
  // Forgets the sequence's write-backs (it is freed).
  virtual void DropWriteBacks(int seq_slot) = 0;

  // The tier's own counters into `stats`.
  virtual void AddStats(OffloadStats* stats) const = 0;
};

// `n` events without timing (the tiers' per-layer events), and their release.
absl::Status CreateEvents(int n, std::vector<cudaEvent_t>* events);
void DestroyEvents(std::vector<cudaEvent_t>* events);

// The tier of an offloaded placement, connected (kRemote: to its storage nodes) and
// checked against the model's block size; `host_blocks` sizes a new host pool.
absl::StatusOr<std::unique_ptr<GpuKvTier>> ConnectGpuKvTier(KvPlacement placement,
                                                            const OffloadOptions& options,
                                                            int64_t block_bytes,
                                                            int64_t host_blocks);

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_GPU_KV_TIER_H_
