// CudaDecoder with the KV cache offloaded to the storage tier (docs/CUDA.md "KV offload").
//
// The GPU slot pool is a block cache per (sequence, layer, KV head). Per layer of a decode
// step, after the attention: the predictor chooses the layer's blocks for the next step,
// the plan kernel compares them with the cache (on the GPU) and lists the missing ones, and
// the copy stream gathers them from the tier while the step goes on; the next step's
// attention of that layer waits for that fetch only. Complete blocks are written to the
// tier (prefill: all of the prompt's; decode: the tail block when it fills).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "backends/cuda/block_rules.h"
#include "backends/cuda/cache_plan.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_decoder.h"
#include "backends/cuda/cuda_decoder_internal.h"
#include "backends/cuda/fill.h"
#include "backends/cuda/offload_kernels.h"
#include "kvstore/client/connect_nodes.h"
#include "kvstore/cuda/gather_blocks.h"
#include "kvstore/cuda/gpu_fetcher.h"
#include "kvstore/host_memory.h"

namespace apr::cuda {
namespace {

template <typename T>
absl::Status AllocPinnedZ(PinnedBuffer<T>* b, int64_t n) {
  auto r = PinnedBuffer<T>::Allocate(static_cast<size_t>(n));
  if (!r.ok()) return r.status();
  *b = *std::move(r);
  if (n > 0) std::memset(b->get(), 0, n * sizeof(T));
  return absl::OkStatus();
}

}  // namespace

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
  const int64_t wb_area = remote_ ? images : 0;  // remote write-back staging, per image
  if (cache_pool_slots_ + wb_area > std::numeric_limits<int32_t>::max())
    return absl::UnimplementedError("more than 2^31 GPU block cache slots");
  APR_RETURN_IF_ERROR(AllocateOffloadBuffers(wb_area));
  return remote_ ? ConnectRemoteTier() : ConnectLocalTier();
}

// The block cache (pool and maps), the tier table, fetch and write-back lists, counters,
// the copy and mark streams and their events.
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
  APR_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
  APR_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&mark_stream_, cudaStreamNonBlocking));
  for (auto* v : {&plan_events_, &fetch_events_, &mark_events_}) {
    v->resize(L);
    for (cudaEvent_t& e : *v)
      APR_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  }
  APR_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&copy_join_, cudaEventDisableTiming));
  return absl::OkStatus();
}

absl::Status CudaDecoder::ConnectLocalTier() {
  const ModelConfig& c = config();
  const int L = c.num_hidden_layers, nkv = c.num_key_value_heads;
  const OffloadOptions& o = opt_.offload;
  local_ = o.local_tier;
  if (local_ == nullptr) {
    const int64_t blocks = o.host_pool_blocks > 0
                               ? o.host_pool_blocks
                               : int64_t{opt_.max_sequences} * max_blocks_ * L * nkv;
    auto t = LocalKvTier::Create(BlockBytes(), blocks);
    if (!t.ok()) return t.status();
    local_ = *std::move(t);
  }
  if (local_->store->block_bytes() != BlockBytes()) {
    return absl::InvalidArgumentError(absl::StrCat("the local tier's blocks are ",
                                                   local_->store->block_bytes(),
                                                   " bytes; this model's are ", BlockBytes()));
  }
  return absl::OkStatus();
}

// The storage node(s), the fetcher of UCX gets into pinned staging, and the thread that
// starts its jobs.
absl::Status CudaDecoder::ConnectRemoteTier() {
  const ModelConfig& c = config();
  const int L = c.num_hidden_layers, nkv = c.num_key_value_heads;
  const OffloadOptions& o = opt_.offload;
  remote_tier_ = o.remote_tier;
  if (remote_tier_ == nullptr) {
    std::vector<std::string> nodes = o.remote_addresses;
    if (!o.remote_address.empty()) nodes.insert(nodes.begin(), o.remote_address);
    if (nodes.empty() || (!o.remote_address.empty() && !o.remote_addresses.empty())) {
      return absl::InvalidArgumentError(
          "offload-remote needs a storage node: remote_address, or remote_addresses for several");
    }
    kvstore::RemoteTierOptions ro;
    ro.ucx.tls = o.ucx_tls;
    ro.ucx.net_devices = o.ucx_net_devices;
    ro.tls = o.tls;
    ro.auth_token_file = o.auth_token_file;
    // One node: a RemoteTier; several: a ShardedTier over them, by KV head.
    auto t = kvstore::ConnectStorageNodes(nodes, ro, o.replication);
    if (!t.ok()) return t.status();
    remote_tier_ = *std::move(t);
  }
  if (remote_tier_->block_bytes() != BlockBytes()) {
    return absl::InvalidArgumentError(absl::StrCat("the storage node's blocks are ",
                                                   remote_tier_->block_bytes(),
                                                   " bytes; this model's are ", BlockBytes()));
  }
  auto f = kvstore::GpuBlockFetcher::Remote(remote_tier_.get(), pool_.get(),
                                            std::max(max_fetch_, L * nkv), o.remote_chunk_blocks,
                                            o.remote_staging_chunks, copy_stream_);
  if (!f.ok()) return f.status();
  fetcher_ = *std::move(f);
  APR_RETURN_IF_ERROR(AllocPinnedZ(&h_fetch_, int64_t{L} * 2 * max_fetch_));
  APR_RETURN_IF_ERROR(AllocPinnedZ(&h_fetch_count_, L));
  remote_pending_.assign(L, {});
  remote_posted_.assign(L, 0);
  remote_started_.assign(L, 0);
  remote_thread_ = std::thread([this] { RemoteLoop(); });
  return absl::OkStatus();
}

void CudaDecoder::ShutdownOffload() {
  if (remote_thread_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(remote_mu_);
      remote_stop_ = true;
    }
    remote_cv_.notify_all();
    remote_thread_.join();
  }
  if (copy_stream_ != nullptr) cudaStreamSynchronize(copy_stream_);
  if (mark_stream_ != nullptr) cudaStreamSynchronize(mark_stream_);
  remote_pending_.clear();
  fetcher_.reset();  // joins its thread, synchronises the copy stream
  for (auto* v : {&plan_events_, &fetch_events_, &mark_events_}) {
    for (cudaEvent_t e : *v) cudaEventDestroy(e);
    v->clear();
  }
  if (copy_join_ != nullptr) cudaEventDestroy(copy_join_);
  copy_join_ = nullptr;
  if (copy_stream_ != nullptr) cudaStreamDestroy(copy_stream_);
  if (mark_stream_ != nullptr) cudaStreamDestroy(mark_stream_);
  copy_stream_ = mark_stream_ = nullptr;
}

// --- The remote fetch thread: plan event -> the host's fetch list -> a fetcher job. ---

void CudaDecoder::RemoteLoop() {
  cudaSetDevice(opt_.device);
  for (;;) {
    int l;
    {
      std::unique_lock<std::mutex> lock(remote_mu_);
      remote_cv_.wait(lock, [&] { return remote_stop_ || !remote_queue_.empty(); });
      if (remote_queue_.empty()) return;
      l = remote_queue_.front();
      remote_queue_.pop_front();
    }
    absl::Status s =
        CudaStatus(cudaEventSynchronize(plan_events_[l]), "plan event", __FILE__, __LINE__);
    std::shared_ptr<kvstore::GpuFetchJob> job;
    if (s.ok()) {
      const int n = h_fetch_count_[l];
      if (n < 0 || n > max_fetch_) {
        s = absl::InternalError(absl::StrCat("a fetch list of ", n, " blocks"));
      } else if (n > 0) {
        const uint32_t* src = h_fetch_.get() + int64_t{l} * 2 * max_fetch_;
        const uint32_t* dst = src + max_fetch_;
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
      std::lock_guard<std::mutex> lock(remote_mu_);
      remote_pending_[l].push_back(job);
      ++remote_started_[l];
      if (!s.ok() && remote_error_.ok()) remote_error_ = s;
    }
    remote_cv_.notify_all();
  }
}

absl::Status CudaDecoder::DrainRemoteFetches() {
  if (!remote_) return absl::OkStatus();
  const int L = config().num_hidden_layers;
  std::vector<std::deque<std::shared_ptr<kvstore::GpuFetchJob>>> jobs(L);
  {
    std::unique_lock<std::mutex> lock(remote_mu_);
    remote_cv_.wait(lock, [&] {
      if (!remote_error_.ok()) return true;
      for (int l = 0; l < L; ++l)
        if (remote_started_[l] < remote_posted_[l]) return false;
      return true;
    });
    if (!remote_error_.ok()) return remote_error_;
    for (int l = 0; l < L; ++l) jobs[l].swap(remote_pending_[l]);
  }
  for (int l = 0; l < L; ++l) {
    for (const auto& job : jobs[l]) {
      if (job != nullptr) APR_RETURN_IF_ERROR(fetcher_->Wait(job));
      APR_CUDA_RETURN_IF_ERROR(LaunchMarkFetched(done_.get(), l, stream_));
    }
  }
  APR_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::Status CudaDecoder::SyncOffload() {
  APR_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  APR_RETURN_IF_ERROR(DrainRemoteFetches());
  APR_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(copy_stream_));
  APR_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(mark_stream_));
  return absl::OkStatus();
}

// --- Per layer inside a decode step. ---

absl::Status CudaDecoder::WaitLayerFetch(int l, bool eager) {
  if (remote_) {
    std::deque<std::shared_ptr<kvstore::GpuFetchJob>> jobs;
    {
      std::unique_lock<std::mutex> lock(remote_mu_);
      remote_cv_.wait(
          lock, [&] { return remote_started_[l] >= remote_posted_[l] || !remote_error_.ok(); });
      if (!remote_error_.ok()) return remote_error_;
      jobs.swap(remote_pending_[l]);
    }
    if (jobs.empty()) {
      // Fetched already (the first step after prefill): a wait that cannot stall.
      APR_CUDA_RETURN_IF_ERROR(
          LaunchStallProbe(issued_.get(), done_.get(), l, 1, counters_.get(), stream_));
      return absl::OkStatus();
    }
    // The mark stream waits for the jobs and marks them done; the compute stream probes,
    // then waits for the marks.
    for (const auto& job : jobs) {
      if (job != nullptr) APR_RETURN_IF_ERROR(fetcher_->StreamWait(job, mark_stream_));
      APR_CUDA_RETURN_IF_ERROR(LaunchMarkFetched(done_.get(), l, mark_stream_));
    }
    APR_CUDA_RETURN_IF_ERROR(cudaEventRecord(mark_events_[l], mark_stream_));
    APR_CUDA_RETURN_IF_ERROR(
        LaunchStallProbe(issued_.get(), done_.get(), l, 1, counters_.get(), stream_));
    APR_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream_, mark_events_[l], 0));
    return absl::OkStatus();
  }
  if (!eager) return absl::OkStatus();  // graphs: the previous step joined its fetches
  APR_CUDA_RETURN_IF_ERROR(
      LaunchStallProbe(issued_.get(), done_.get(), l, 1, counters_.get(), stream_));
  APR_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream_, fetch_events_[l], 0));
  return absl::OkStatus();
}

CachePlanArgs CudaDecoder::PlanArgs(int batch, int first, int count) const {
  const int ms = opt_.max_sequences;
  const int32_t* d = d_step_.get();
  CachePlanArgs pa;
  pa.batch = batch;
  pa.layer = first;
  pa.layer_count = count;
  pa.next_lens = d + kNextLens * ms;
  pa.seq_slots = d + kSeqSlots * ms;
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

absl::Status CudaDecoder::CopyFetchListToHost(int l, cudaStream_t s) {
  uint32_t* h = h_fetch_.get() + int64_t{l} * 2 * max_fetch_;
  const int64_t bytes = max_fetch_ * sizeof(uint32_t);
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(h_fetch_count_.get() + l, fetch_count_.get() + l,
                                           sizeof(int32_t), cudaMemcpyDeviceToHost, s));
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(h, fetch_src_.get() + int64_t{l} * max_fetch_, bytes,
                                           cudaMemcpyDeviceToHost, s));
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(h + max_fetch_,
                                           fetch_dst_.get() + int64_t{l} * max_fetch_, bytes,
                                           cudaMemcpyDeviceToHost, s));
  return absl::OkStatus();
}

void CudaDecoder::PostRemoteFetches(int first, int count) {
  {
    std::lock_guard<std::mutex> lock(remote_mu_);
    for (int l = first; l < first + count; ++l) {
      remote_queue_.push_back(l);
      ++remote_posted_[l];
    }
  }
  remote_cv_.notify_all();
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
  pa.record_tier = !remote_;
  pa.wb_src = wb_src_.get() + int64_t{first} * max_wb_;
  pa.wb_dst = wb_dst_.get() + int64_t{first} * max_wb_;
  pa.wb_count = wb_count_.get() + first;
  pa.max_wb = max_wb_;
  APR_CUDA_RETURN_IF_ERROR(LaunchCachePlan(pa, s));
  const int64_t bb = BlockBytes();
  if (remote_) {
    // The host needs the lists to issue the UCX gets: counts and lists to pinned memory.
    for (int l = first; l < first + count; ++l) {
      const int64_t z = l - first;
      APR_RETURN_IF_ERROR(CopyFetchListToHost(l, s));
      if (!remote_fills_.empty()) {
        // The filled block goes to the write-back area (GPU); AfterOffloadStep sends it.
        APR_CUDA_RETURN_IF_ERROR(kvstore::LaunchGatherBlocksCounted(
            pool_.get(), pa.wb_src + z * max_wb_, pool_.get(), pa.wb_dst + z * max_wb_,
            pa.wb_count + z, max_wb_, bb, 0, s));
      }
      APR_CUDA_RETURN_IF_ERROR(cudaEventRecord(plan_events_[l], s));
    }
    PostRemoteFetches(first, count);
    return absl::OkStatus();
  }
  // Local: the copy stream fetches from the mapped pool once the plan has run; per layer it
  // marks the fetch done, then writes back the block the step filled (the eager event
  // follows the write-back: the next step's memset of the counts must not overtake it).
  APR_CUDA_RETURN_IF_ERROR(cudaEventRecord(plan_events_[first], s));
  APR_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(copy_stream_, plan_events_[first], 0));
  APR_CUDA_RETURN_IF_ERROR(LaunchSpin(opt_.offload.debug_fetch_delay_us, copy_stream_));
  void* host_pool = local_->mapped->device_pointer();
  const int fetch_ctas = opt_.offload.fetch_ctas > 0 ? opt_.offload.fetch_ctas : num_sms_;
  for (int l = first; l < first + count; ++l) {
    const int64_t z = l - first;
    APR_CUDA_RETURN_IF_ERROR(kvstore::LaunchGatherBlocksCounted(
        host_pool, pa.fetch_src + z * max_fetch_, pool_.get(), pa.fetch_dst + z * max_fetch_,
        pa.fetch_count + z, max_fetch_, bb, fetch_ctas, copy_stream_));
    APR_CUDA_RETURN_IF_ERROR(LaunchMarkFetched(done_.get(), l, copy_stream_));
    APR_CUDA_RETURN_IF_ERROR(kvstore::LaunchGatherBlocksCounted(
        pool_.get(), pa.wb_src + z * max_wb_, host_pool, pa.wb_dst + z * max_wb_, pa.wb_count + z,
        max_wb_, bb, 0, copy_stream_));
    if (eager) APR_CUDA_RETURN_IF_ERROR(cudaEventRecord(fetch_events_[l], copy_stream_));
  }
  return absl::OkStatus();
}

absl::Status CudaDecoder::FinishStepFetches(bool eager) {
  if (!remote_ && !eager) {
    // A captured step must rejoin the copy stream: the fetches for the next step complete
    // within this one. Stalls: the layers whose fetch is not done when the compute stream
    // gets here.
    const int L = config().num_hidden_layers, dl = opt_.sparse.dense_layers;
    APR_CUDA_RETURN_IF_ERROR(
        LaunchStallProbe(issued_.get(), done_.get(), dl, L - dl, counters_.get(), stream_));
    APR_CUDA_RETURN_IF_ERROR(cudaEventRecord(copy_join_, copy_stream_));
    APR_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream_, copy_join_, 0));
  }
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
  remote_fills_.clear();
  for (int b = 0; b < B; ++b) {
    auto& s = static_cast<CudaSequence&>(*seqs[b]);
    if (!s.in_tier)
      return absl::FailedPreconditionError("the sequence has no blocks in the tier (prefill it)");
    ReleaseStaging(s);  // the prompt is complete: decode reads the tier and cache
    if (remote_) APR_RETURN_IF_ERROR(DrainRemoteWriteBacks(s, step_counter_ - 2));
    const int64_t len = s.len + 1;
    if (len % kBlockTokens != 0) continue;
    // This step's token completes block (len - 1) / 16: it is written back after the
    // layer's attention (local: to slots allocated now).
    const int blk = static_cast<int>((len - 1) / kBlockTokens);
    uint32_t* row = h_wb_.get() + int64_t{b} * L * nkv;
    if (remote_) {
      for (int i = 0; i < L * nkv; ++i)
        row[i] = static_cast<uint32_t>(cache_pool_slots_ + int64_t{s.slot} * L * nkv + i);
      remote_fills_.push_back({&s, blk});
      continue;
    }
    std::vector<kvstore::BlockKey> keys;
    keys.reserve(L * nkv);
    for (int l = 0; l < L; ++l)
      for (int g = 0; g < nkv; ++g) keys.push_back({l, g, blk});
    auto slots = local_->store->AllocateBlocks(s.tier_id, keys);
    if (!slots.ok()) return slots.status();
    std::copy(slots->begin(), slots->end(), row);
  }
  return absl::OkStatus();
}

absl::Status CudaDecoder::AfterOffloadStep() {
  host_stats_.decode_steps += 1;
  if (!remote_) return absl::OkStatus();
  {
    std::lock_guard<std::mutex> lock(remote_mu_);
    if (!remote_error_.ok()) return remote_error_;
  }
  const ModelConfig& c = config();
  const int L = c.num_hidden_layers, nkv = c.num_key_value_heads;
  // The filled blocks are in the write-back area (the step is complete): store them.
  for (const PendingFill& f : remote_fills_) {
    std::vector<kvstore::BlockKey> keys;
    std::vector<uint32_t> slots;
    for (int l = 0; l < L; ++l) {
      for (int g = 0; g < nkv; ++g) {
        keys.push_back({l, g, f.block});
        slots.push_back(
            static_cast<uint32_t>(cache_pool_slots_ + (int64_t{f.seq->slot} * L + l) * nkv + g));
      }
    }
    auto job = fetcher_->WriteBack(f.seq->tier_id, std::move(keys), std::move(slots), nullptr);
    if (!job.ok()) return job.status();
    f.seq->write_backs.push_back({*std::move(job), f.block, step_counter_});
  }
  remote_fills_.clear();
  return absl::OkStatus();
}

absl::Status CudaDecoder::DrainRemoteWriteBacks(CudaSequence& seq, int64_t up_to_step) {
  const ModelConfig& c = config();
  const int L = c.num_hidden_layers, nkv = c.num_key_value_heads;
  auto it = seq.write_backs.begin();
  while (it != seq.write_backs.end()) {
    if (it->step > up_to_step) {
      ++it;
      continue;
    }
    APR_RETURN_IF_ERROR(fetcher_->Wait(it->job));
    const std::vector<uint32_t>& slots = kvstore::GpuBlockFetcher::tier_slots(*it->job);
    if (static_cast<int>(slots.size()) != L * nkv)
      return absl::InternalError("a write-back returned the wrong number of slots");
    APR_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(tier_table_.get() + (int64_t{seq.slot} * max_blocks_ + it->block) * L * nkv,
                   slots.data(), slots.size() * sizeof(uint32_t), cudaMemcpyHostToDevice));
    host_stats_.blocks_written += L * nkv;
    it = seq.write_backs.erase(it);
  }
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
  const int L = c.num_hidden_layers, ms = opt_.max_sequences;
  h_step_[kSeqSlots * ms] = seq.slot;
  h_step_[kNextLens * ms] = static_cast<int32_t>(seq.len + 1);
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(d_step_.get(), h_step_.get(), h_step_.size() * 4,
                                           cudaMemcpyHostToDevice, stream_));
  const int64_t bb = BlockBytes();
  for (int l = opt_.sparse.dense_layers; l < L; ++l) {  // dense layers are resident
    APR_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(fetch_count_.get() + l, 0, sizeof(int32_t), stream_));
    const CachePlanArgs pa = PlanArgs(1, l, 1);
    APR_CUDA_RETURN_IF_ERROR(LaunchCachePlan(pa, stream_));
    if (!remote_) {
      APR_CUDA_RETURN_IF_ERROR(kvstore::LaunchGatherBlocksCounted(
          local_->mapped->device_pointer(), pa.fetch_src, pool_.get(), pa.fetch_dst, pa.fetch_count,
          max_fetch_, bb, 0, stream_));
      APR_CUDA_RETURN_IF_ERROR(LaunchMarkFetched(done_.get(), l, stream_));
      continue;
    }
    APR_RETURN_IF_ERROR(CopyFetchListToHost(l, stream_));
    APR_CUDA_RETURN_IF_ERROR(cudaEventRecord(plan_events_[l], stream_));
    PostRemoteFetches(l, 1);
  }
  APR_RETURN_IF_ERROR(DrainRemoteFetches());  // remote: waits for the gets, marks them done
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
  if (remote_) {
    if (s.ok()) s = DrainRemoteWriteBacks(seq, std::numeric_limits<int64_t>::max());
    seq.write_backs.clear();
    remote_tier_->FreeSequence(seq.tier_id).IgnoreError();
  } else {
    local_->store->FreeSequence(seq.tier_id).IgnoreError();
  }
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
  // Remote write-backs are counted when their slots come back (host_stats_).
  if (!remote_) st.blocks_written += static_cast<int64_t>(c[kCounterWrittenBack]);
  st.bytes_written = st.blocks_written * bb;
  if (fetcher_ != nullptr) {
    const kvstore::GpuFetchStats f = fetcher_->stats();
    st.remote_host_stalls = f.host_stalls;
    st.remote_host_stall_seconds = f.host_stall_seconds;
  }
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
  if (remote_) {
    APR_RETURN_IF_ERROR(DrainRemoteWriteBacks(seq, std::numeric_limits<int64_t>::max()));
  }
  uint32_t slot = kNoTierSlot;
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpy(&slot,
                                      tier_table_.get() +
                                          (int64_t{seq.slot} * max_blocks_ + block) * L * nkv +
                                          layer * nkv + kv_head,
                                      sizeof(slot), cudaMemcpyDeviceToHost));
  if (slot == kNoTierSlot) return absl::NotFoundError("the block has no tier slot");
  if (!remote_) {
    std::memcpy(out.data(), local_->store->slot_data(slot), bb);
    return out;
  }
  std::byte* dst = reinterpret_cast<std::byte*>(out.data());
  APR_RETURN_IF_ERROR(remote_tier_->Read(absl::MakeConstSpan(&slot, 1), absl::MakeSpan(&dst, 1)));
  return out;
}

}  // namespace apr::cuda
