// CudaDecoder with the KV cache offloaded to the storage tier (docs/CUDA.md "KV offload").
//
// The GPU slot pool is a block cache per (sequence, layer, KV head). Per layer of a decode
// step, after the attention: the predictor chooses the layer's blocks for the next step,
// the plan kernel compares them with the cache (on the GPU) and lists the missing ones, and
// the tier (gpu_kv_tier.h: host or remote) copies them in while the step goes on; the next
// step's attention of that layer waits for that fetch only. Complete blocks are written to
// the tier (prefill: all of the prompt's; decode: the tail block when it fills).
#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "backends/cuda/block_rules.h"
#include "backends/cuda/cache_plan.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_decoder.h"
#include "backends/cuda/cuda_decoder_internal.h"
#include "backends/cuda/offload_kernels.h"

namespace apr::cuda {

int64_t CudaDecoder::BlockBytes() const {
  return int64_t{2} * kBlockTokens * config().head_dim * sizeof(__nv_bfloat16);
}

CacheMap CudaDecoder::Cache() const {
  CacheMap m;
  m.where = cache_where_.get();
  m.tags = cache_tags_.get();
  m.stamps = cache_stamps_.get();
  m.layers = static_cast<int>(config().num_hidden_layers);
  m.kv_heads = static_cast<int>(config().num_key_value_heads);
  m.max_blocks = max_blocks_;
  m.slots = cache_slots_;
  return m;
}

absl::Status CudaDecoder::InitOffload() {
  const ModelConfig& c = config();
  const int L = c.num_hidden_layers, nkv = c.num_key_value_heads;
  const int ms = opt_.max_sequences;
  const OffloadOptions& o = opt_.offload;
  if (o.extra_cache_slots < 0) return absl::InvalidArgumentError("extra_cache_slots < 0");
  if (o.predict_group_layers < 1)
    return absl::InvalidArgumentError("predict_group_layers must be at least 1");
  if (o.fetch_ctas < 0) return absl::InvalidArgumentError("fetch_ctas < 0 (0: the default)");
  cache_slots_ = MaxListLength(KBlocksMax()) + o.extra_cache_slots;
  if (cache_slots_ > 46 * 1024) {
    return absl::UnimplementedError(
        absl::StrCat("a GPU block cache of ", cache_slots_,
                     " slots per (sequence, layer, KV head) (at most 47104)"));
  }
  const int64_t images = int64_t{ms} * L * nkv;
  cache_pool_slots_ = images * cache_slots_;
  // The tier first: a wrong address or block size fails before GPU memory is taken.
  auto tier =
      ConnectGpuKvTier(opt_.placement, o, BlockBytes(), int64_t{ms} * max_blocks_ * L * nkv);
  if (!tier.ok()) return tier.status();
  tier_ = *std::move(tier);
  // A write-back area of one slot per image, when the tier stores filled blocks from there.
  const int64_t wb_area = tier_->needs_write_back_area() ? images : 0;
  if (cache_pool_slots_ + wb_area > std::numeric_limits<int32_t>::max())
    return absl::UnimplementedError("more than 2^31 GPU block cache slots");
  APR_RETURN_IF_ERROR(AllocateOffloadBuffers(wb_area));
  return tier_->Bind(CacheBinding());
}

GpuCacheBinding CudaDecoder::CacheBinding() const {
  const ModelConfig& c = config();
  GpuCacheBinding b;
  b.device = opt_.device;
  b.layers = c.num_hidden_layers;
  b.kv_heads = c.num_key_value_heads;
  b.max_blocks = max_blocks_;
  b.max_sequences = opt_.max_sequences;
  b.block_bytes = BlockBytes();
  b.pool = pool_.get();
  b.write_back_area = cache_pool_slots_;
  b.tier_table = tier_table_.get();
  b.fetch_src = fetch_src_.get();
  b.fetch_dst = fetch_dst_.get();
  b.fetch_count = fetch_count_.get();
  b.max_fetch = max_fetch_;
  b.wb_src = wb_src_.get();
  b.wb_dst = wb_dst_.get();
  b.wb_count = wb_count_.get();
  b.max_wb = max_wb_;
  b.first_fetched_layer = opt_.sparse.dense_layers;
  b.issued = issued_.get();
  b.done = done_.get();
  b.counters = counters_.get();
  b.compute = stream_;
  b.fetch_ctas = opt_.offload.fetch_ctas > 0 ? opt_.offload.fetch_ctas : num_sms_;
  b.debug_fetch_delay_us = opt_.offload.debug_fetch_delay_us;
  return b;
}

// The block cache (pool and maps), the tier table, fetch and write-back lists, counters.
absl::Status CudaDecoder::AllocateOffloadBuffers(int64_t wb_area) {
  const ModelConfig& c = config();
  const int L = c.num_hidden_layers, nkv = c.num_key_value_heads, hd = c.head_dim;
  const int ms = opt_.max_sequences;
  const int64_t images = int64_t{ms} * L * nkv;
  const int64_t slot_elems = 2 * kBlockTokens * hd;
  // predictor-hybrid's query slots follow the cache (cuda_decoder_hybrid.cc).
  APR_RETURN_IF_ERROR(
      AllocZ(&pool_, (cache_pool_slots_ + wb_area + QueryAreaSlots()) * slot_elems, 0));
  APR_RETURN_IF_ERROR(AllocZ(&cache_where_, images * max_blocks_, 0xff));
  APR_RETURN_IF_ERROR(AllocZ(&cache_tags_, images * cache_slots_, 0xff));
  APR_RETURN_IF_ERROR(AllocZ(&cache_stamps_, images * cache_slots_, 0));
  APR_RETURN_IF_ERROR(AllocZ(&tier_table_, int64_t{ms} * max_blocks_ * L * nkv, 0xff));
  max_fetch_ = ms * nkv * cache_slots_;
  max_wb_ = ms * nkv;
  APR_RETURN_IF_ERROR(AllocZ(&fetch_src_, int64_t{L} * max_fetch_, 0));
  APR_RETURN_IF_ERROR(AllocZ(&fetch_dst_, int64_t{L} * max_fetch_, 0));
  APR_RETURN_IF_ERROR(AllocZ(&wb_src_, int64_t{L} * max_wb_, 0));
  APR_RETURN_IF_ERROR(AllocZ(&wb_dst_, int64_t{L} * max_wb_, 0));
  APR_RETURN_IF_ERROR(AllocZ(&fetch_count_, L, 0));
  APR_RETURN_IF_ERROR(AllocZ(&wb_count_, L, 0));
  const int64_t group = std::min(opt_.offload.predict_group_layers, L);
  APR_RETURN_IF_ERROR(AllocZ(&plan_scratch_, group * ms * nkv * cache_slots_, 0));
  APR_RETURN_IF_ERROR(AllocZ(&issued_, L, 0));
  APR_RETURN_IF_ERROR(AllocZ(&done_, L, 0));
  APR_RETURN_IF_ERROR(AllocZ(&counters_, kOffloadCounters, 0));
  APR_RETURN_IF_ERROR(AllocPinnedZ(&h_counters_, kOffloadCounters));
  APR_RETURN_IF_ERROR(AllocPinnedZ(&h_wb_, int64_t{ms} * L * nkv));
  APR_RETURN_IF_ERROR(AllocZ(&d_wb_, int64_t{ms} * L * nkv, 0xff));
  return absl::OkStatus();
}

// The tier's destructor joins its thread and streams before the pool it copies into goes.
void CudaDecoder::ShutdownOffload() { tier_.reset(); }

absl::Status CudaDecoder::SyncOffload() {
  APR_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return tier_->Drain();
}

// --- Per layer inside a decode step. ---

absl::Status CudaDecoder::WaitLayerFetch(int l, bool eager) { return tier_->WaitFetch(l, eager); }

CachePlanArgs CudaDecoder::PlanArgs(int batch, int first, int count) const {
  CachePlanArgs pa;
  pa.batch = batch;
  pa.layer = first;
  pa.layer_count = count;
  pa.next_lens = DeviceStep().next_lens;
  pa.seq_slots = DeviceStep().seq_slots;
  pa.sel = predictor_->SelectionView();
  pa.sel_first_layer = opt_.sparse.dense_layers;
  pa.cache = Cache();
  pa.tier = tier_table_.get();
  pa.reuse = opt_.offload.reuse_cached_blocks;
  pa.fetch_src = fetch_src_.get() + int64_t{first} * max_fetch_;
  pa.fetch_dst = fetch_dst_.get() + int64_t{first} * max_fetch_;
  pa.fetch_count = fetch_count_.get() + first;
  pa.max_fetch = max_fetch_;
  pa.scratch = plan_scratch_.get();
  pa.counters = counters_.get();
  pa.issued = issued_.get();
  pa.error = error_flag_.get();
  return pa;
}

absl::Status CudaDecoder::PrefetchLayers(int B, int first, int count, const StepKey& key,
                                         bool eager) {
  cudaStream_t s = stream_;
  if (opt_.offload.predict_on_side_stream) {
    APR_RETURN_IF_ERROR(predictor_->ForkSideStream(first, stream_));
    s = predictor_->side_stream();
  }
  APR_RETURN_IF_ERROR(predictor_->PredictFor(
      PredictArgs(B, key.predict_cols, key.recompute, first - opt_.sparse.dense_layers, count), s));
  // The group's counts are adjacent: one memset each. Their previous readers (the
  // previous step's fetches of these layers) are done: this step's attention of each of
  // these layers waited for them.
  APR_CUDA_RETURN_IF_ERROR(
      cudaMemsetAsync(fetch_count_.get() + first, 0, count * sizeof(int32_t), s));
  APR_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(wb_count_.get() + first, 0, count * sizeof(int32_t), s));
  CachePlanArgs pa = PlanArgs(B, first, count);
  pa.wb_slots = d_wb_.get();
  pa.record_tier = tier_->writes_back_on_device();
  pa.wb_src = wb_src_.get() + int64_t{first} * max_wb_;
  pa.wb_dst = wb_dst_.get() + int64_t{first} * max_wb_;
  pa.wb_count = wb_count_.get() + first;
  pa.max_wb = max_wb_;
  APR_CUDA_RETURN_IF_ERROR(LaunchCachePlan(pa, s));
  return tier_->StartFetches(first, count, s, eager);
}

absl::Status CudaDecoder::FinishStepFetches(bool eager) {
  APR_RETURN_IF_ERROR(tier_->JoinStepFetches(eager));
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(h_counters_.get(), counters_.get(),
                                           kOffloadCounters * sizeof(unsigned long long),
                                           cudaMemcpyDeviceToHost, stream_));
  return absl::OkStatus();
}

// --- Between steps. ---

absl::Status CudaDecoder::PrepareOffloadStep(absl::Span<Sequence* const> seqs) {
  const ModelConfig& c = config();
  const int L = c.num_hidden_layers, nkv = c.num_key_value_heads;
  const int B = static_cast<int>(seqs.size());
  std::fill(h_wb_.get(), h_wb_.get() + int64_t{B} * L * nkv, kNoTierSlot);
  tier_->BeginStep();
  for (int b = 0; b < B; ++b) {
    auto& s = static_cast<CudaSequence&>(*seqs[b]);
    if (!s.in_tier)
      return absl::FailedPreconditionError("the sequence has no blocks in the tier (prefill it)");
    ReleaseStaging(s);  // the prompt is complete: decode reads the tier and cache
    APR_RETURN_IF_ERROR(CompleteWriteBacks(s, step_counter_ - 2));
    const int64_t len = s.len + 1;
    if (len % kBlockTokens != 0) continue;
    // This step's token completes block (len - 1) / 16: it is written back after the
    // layer's attention, to the slots the tier gives now.
    const int blk = static_cast<int>((len - 1) / kBlockTokens);
    APR_RETURN_IF_ERROR(
        tier_->PlanWriteBack(s.slot, s.tier_id, blk, h_wb_.get() + int64_t{b} * L * nkv));
  }
  return absl::OkStatus();
}

absl::Status CudaDecoder::AfterOffloadStep() {
  host_stats_.decode_steps += 1;
  return tier_->AfterStep(step_counter_);
}

absl::Status CudaDecoder::CompleteWriteBacks(CudaSequence& seq, int64_t up_to_step) {
  auto stored = tier_->CompleteWriteBacks(seq.slot, up_to_step);
  if (!stored.ok()) return stored.status();
  host_stats_.blocks_written += *stored;
  return absl::OkStatus();
}

// --- Sequences. ---

absl::Status CudaDecoder::SeedCache(CudaSequence& seq, const std::vector<int32_t>& blocks,
                                    const __nv_bfloat16* src) {
  const ModelConfig& c = config();
  const int L = c.num_hidden_layers, nkv = c.num_key_value_heads;
  const int64_t images = int64_t{L} * nkv;
  APR_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(cache_where_.get() + seq.slot * images * max_blocks_,
                                           0xff, images * max_blocks_ * sizeof(int32_t), stream_));
  APR_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(cache_tags_.get() + seq.slot * images * cache_slots_,
                                           0xff, images * cache_slots_ * sizeof(int32_t), stream_));
  APR_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(cache_stamps_.get() + seq.slot * images * cache_slots_,
                                           0, images * cache_slots_ * sizeof(int32_t), stream_));
  if (blocks.empty()) {
    APR_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return absl::OkStatus();
  }
  if (static_cast<int>(blocks.size()) > cache_slots_)
    return absl::InternalError("more seed blocks than cache slots");
  DeviceBuffer<int32_t> dblocks;
  APR_RETURN_IF_ERROR(AllocZ(&dblocks, static_cast<int64_t>(blocks.size()), 0));
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpy(dblocks.get(), blocks.data(), blocks.size() * sizeof(int32_t),
                                      cudaMemcpyHostToDevice));
  SeedCacheArgs a;
  a.seq_slot = seq.slot;
  a.blocks = dblocks.get();
  a.n = static_cast<int>(blocks.size());
  a.cache = Cache();
  a.src_pool = src;
  a.src_table = SlotTable{group_table_.get(), max_blocks_, L * nkv, nkv};
  a.pool = pool_.get();
  a.head_dim = c.head_dim;
  APR_CUDA_RETURN_IF_ERROR(LaunchSeedCache(a, stream_));
  APR_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));  // before dblocks is freed
  return absl::OkStatus();
}

absl::Status CudaDecoder::InitialFetch(CudaSequence& seq) {
  const ModelConfig& c = config();
  const int L = c.num_hidden_layers;
  const StepInputs<int32_t> in = HostStep();
  in.seq_slots[0] = seq.slot;
  in.next_lens[0] = static_cast<int32_t>(seq.len + 1);
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(d_step_.get(), h_step_.get(), h_step_.size() * 4,
                                           cudaMemcpyHostToDevice, stream_));
  for (int l = opt_.sparse.dense_layers; l < L; ++l) {  // dense layers are resident
    APR_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(fetch_count_.get() + l, 0, sizeof(int32_t), stream_));
    APR_CUDA_RETURN_IF_ERROR(LaunchCachePlan(PlanArgs(1, l, 1), stream_));
    APR_RETURN_IF_ERROR(tier_->FetchOnCompute(l));
  }
  APR_RETURN_IF_ERROR(tier_->Drain());  // remote: waits for the gets, marks them done
  APR_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpy(h_counters_.get(), counters_.get(),
                                      kOffloadCounters * sizeof(unsigned long long),
                                      cudaMemcpyDeviceToHost));
  int32_t err = 0;
  APR_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(&err, error_flag_.get(), sizeof(err), cudaMemcpyDeviceToHost));
  if (err != 0) {
    APR_CUDA_RETURN_IF_ERROR(cudaMemset(error_flag_.get(), 0, sizeof(int32_t)));
    return absl::InternalError(
        "planning the first step's GPU block cache failed (a selection for another length, "
        "or a block neither cached nor in the tier)");
  }
  return absl::OkStatus();
}

void CudaDecoder::EndPrompt(Sequence& seq) {
  if (offload_) ReleaseStaging(static_cast<CudaSequence&>(seq));
}

// cudaFree waits for the device, so copies still reading the pool finish first.
void CudaDecoder::ReleaseStaging(CudaSequence& seq) {
  if (seq.staging_blocks == 0) return;
  seq.staging = DeviceBuffer<__nv_bfloat16>();
  seq.staging_blocks = 0;
}

absl::Status CudaDecoder::GrowStaging(CudaSequence& seq, int blocks) {
  if (blocks <= seq.staging_blocks) return absl::OkStatus();
  const ModelConfig& c = config();
  const int64_t group_elems =
      int64_t{c.num_hidden_layers} * c.num_key_value_heads * 2 * kBlockTokens * c.head_dim;
  // Doubling keeps a prompt of many parts at O(prompt) copying; one part gets what it needs.
  const int capacity = std::min(max_blocks_, std::max(blocks, 2 * seq.staging_blocks));
  DeviceBuffer<__nv_bfloat16> grown;
  APR_RETURN_IF_ERROR(Alloc(opt_.debug_fill_byte, &grown, capacity * group_elems));
  if (seq.staging_blocks > 0) {
    APR_CUDA_RETURN_IF_ERROR(cudaMemcpy(grown.get(), seq.staging.get(),
                                        seq.staging_blocks * group_elems * sizeof(__nv_bfloat16),
                                        cudaMemcpyDeviceToDevice));
  }
  seq.staging = std::move(grown);
  seq.staging_blocks = capacity;
  // The group table's row maps block b to staging group b.
  std::vector<int32_t> identity(capacity);
  for (int b = 0; b < capacity; ++b) identity[b] = b;
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpy(group_table_.get() + int64_t{seq.slot} * max_blocks_,
                                      identity.data(), capacity * sizeof(int32_t),
                                      cudaMemcpyHostToDevice));
  return absl::OkStatus();
}

absl::Status CudaDecoder::OffloadAfterPrefill(CudaSequence& seq, const __nv_bfloat16* staging) {
  APR_RETURN_IF_ERROR(SyncOffload());
  if (!seq.in_tier) APR_RETURN_IF_ERROR(CreateTierSequence(seq));
  const int len = static_cast<int>(seq.len);
  // Blocks completed by this part (an earlier part's last block may be among them).
  APR_RETURN_IF_ERROR(WriteOrAllocateTierBlocks(seq, seq.tier_blocks, len / kBlockTokens, staging));
  APR_RETURN_IF_ERROR(SeedCache(seq, SeedBlocks(len), staging));
  return InitialFetch(seq);
}

absl::Status CudaDecoder::OffloadFillRandomContext(CudaSequence& seq, int64_t len) {
  APR_RETURN_IF_ERROR(SyncOffload());
  seq.len = len;
  APR_RETURN_IF_ERROR(CreateTierSequence(seq));
  return WriteOrAllocateTierBlocks(seq, 0, static_cast<int>(len / kBlockTokens), nullptr);
}

absl::Status CudaDecoder::OffloadFillRandomContextFinish(CudaSequence& seq) {
  // Cache contents are whatever the pool holds (FillPoolRandom); only the maps are seeded.
  APR_RETURN_IF_ERROR(SeedCache(seq, SeedBlocks(static_cast<int>(seq.len)), nullptr));
  return InitialFetch(seq);
}

void CudaDecoder::ReleaseOffload(CudaSequence& seq) {
  // Nothing of this sequence may still be in flight when its slots are reused.
  absl::Status s = SyncOffload();
  if (!seq.in_tier) return;
  if (s.ok()) s = CompleteWriteBacks(seq, std::numeric_limits<int64_t>::max());
  tier_->DropWriteBacks(seq.slot);
  tier_->FreeSequence(seq.tier_id);
  seq.in_tier = false;
}

// --- Inspection. ---

OffloadStats CudaDecoder::offload_stats() const {
  OffloadStats st = host_stats_;
  if (!offload_) return st;
  const unsigned long long* c = h_counters_.get();
  const int64_t bb = BlockBytes();
  st.blocks_fetched = static_cast<int64_t>(c[kCounterFetched]);
  st.bytes_fetched = st.blocks_fetched * bb;
  st.prefetch_hits = static_cast<int64_t>(c[kCounterHits]);
  st.predicted_blocks = static_cast<int64_t>(c[kCounterPredicted]);
  st.prefetch_waits = static_cast<int64_t>(c[kCounterWaits]);
  st.prefetch_stalls = static_cast<int64_t>(c[kCounterStalls]);
  // Write-backs stored from the host are counted when their slots come back (host_stats_).
  if (tier_->writes_back_on_device())
    st.blocks_written += static_cast<int64_t>(c[kCounterWrittenBack]);
  st.bytes_written = st.blocks_written * bb;
  tier_->AddStats(&st);
  return st;
}

absl::StatusOr<std::vector<uint16_t>> CudaDecoder::ReadKvBlock(Sequence& base, int layer,
                                                               int kv_head, int block,
                                                               bool from_tier) {
  auto& seq = static_cast<CudaSequence&>(base);
  const ModelConfig& c = config();
  const int L = c.num_hidden_layers, nkv = c.num_key_value_heads;
  APR_RETURN_IF_ERROR(BindDevice());
  APR_RETURN_IF_ERROR(Synchronize());
  if (offload_) APR_RETURN_IF_ERROR(SyncOffload());
  if (seq.slot < 0 || layer < 0 || layer >= L || kv_head < 0 || kv_head >= nkv || block < 0 ||
      block >= NumBlocks(static_cast<int>(seq.len)))
    return absl::InvalidArgumentError("no such block");
  const int64_t bb = BlockBytes();
  std::vector<uint16_t> out(bb / 2);
  if (!offload_) {
    if (from_tier) return absl::FailedPreconditionError("the cache is resident: no tier");
    const int64_t slot = int64_t{seq.groups[block]} * L * nkv + int64_t{layer} * nkv + kv_head;
    APR_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(out.data(), pool_.get() + slot * (bb / 2), bb, cudaMemcpyDeviceToHost));
    return out;
  }
  if (!from_tier && DenseLayerResident(layer))
    return ReadDenseLayerBlock(seq, layer, kv_head, block);
  const int64_t img = (int64_t{seq.slot} * L + layer) * nkv + kv_head;
  if (!from_tier) {
    int32_t where = -1;
    APR_CUDA_RETURN_IF_ERROR(cudaMemcpy(&where, cache_where_.get() + img * max_blocks_ + block,
                                        sizeof(where), cudaMemcpyDeviceToHost));
    if (where < 0) return absl::NotFoundError("the block is not in the GPU block cache");
    APR_CUDA_RETURN_IF_ERROR(cudaMemcpy(out.data(),
                                        pool_.get() + (img * cache_slots_ + where) * (bb / 2), bb,
                                        cudaMemcpyDeviceToHost));
    return out;
  }
  if (block >= seq.len / kBlockTokens)
    return absl::NotFoundError("the block is not complete: it is not in the tier yet");
  APR_RETURN_IF_ERROR(CompleteWriteBacks(seq, std::numeric_limits<int64_t>::max()));
  uint32_t slot = kNoTierSlot;
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpy(&slot,
                                      tier_table_.get() +
                                          (int64_t{seq.slot} * max_blocks_ + block) * L * nkv +
                                          layer * nkv + kv_head,
                                      sizeof(slot), cudaMemcpyDeviceToHost));
  if (slot == kNoTierSlot) return absl::NotFoundError("the block has no tier slot");
  APR_RETURN_IF_ERROR(tier_->ReadBlock(slot, reinterpret_cast<std::byte*>(out.data())));
  return out;
}

}  // namespace apr::cuda
