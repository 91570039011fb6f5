// The storage tier's side of an offloaded sequence (docs/CUDA.md "KV offload"): the local
// tier's pool, a sequence created in the tier, and its complete blocks written there (or
// only given slots) with the device's table of their tier slots.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "backends/cuda/block_rules.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_decoder.h"
#include "backends/cuda/cuda_decoder_internal.h"
#include "kvstore/cuda/gather_blocks.h"
#include "kvstore/host_memory.h"

namespace apr::cuda {
namespace {

std::atomic<uint32_t> g_tier_sequences{0};

}  // namespace

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

absl::Status CudaDecoder::CreateTierSequence(CudaSequence& seq) {
  const ModelConfig& c = config();
  const int L = c.num_hidden_layers, nkv = c.num_key_value_heads;
  if (seq.in_tier) return absl::FailedPreconditionError("the sequence is in the tier already");
  seq.tier_id = kvstore::NewTierSequenceId(g_tier_sequences.fetch_add(1));
  if (remote_) {
    APR_RETURN_IF_ERROR(remote_tier_->CreateSequence(seq.tier_id, L, nkv));
  } else {
    APR_RETURN_IF_ERROR(local_->store->CreateSequence(seq.tier_id, L, nkv));
  }
  seq.in_tier = true;
  seq.tier_blocks = 0;
  APR_CUDA_RETURN_IF_ERROR(cudaMemset(tier_table_.get() + int64_t{seq.slot} * max_blocks_ * L * nkv,
                                      0xff, int64_t{max_blocks_} * L * nkv * sizeof(uint32_t)));
  return absl::OkStatus();
}

absl::Status CudaDecoder::WriteOrAllocateTierBlocks(CudaSequence& seq, int first, int full,
                                                    const __nv_bfloat16* staging) {
  const ModelConfig& c = config();
  const int L = c.num_hidden_layers, nkv = c.num_key_value_heads;
  if (full <= first) return absl::OkStatus();
  const int count = full - first;
  const int64_t n = int64_t{count} * L * nkv;
  // Keys table by table (ascending blocks within each: the tier's append order, and one
  // range per table on the wire).
  std::vector<kvstore::BlockKey> keys;
  std::vector<uint32_t> src;  // staging slot of each key (group b = block b)
  keys.reserve(n);
  if (staging != nullptr) src.reserve(n);
  for (int l = 0; l < L; ++l) {
    for (int g = 0; g < nkv; ++g) {
      for (int b = first; b < full; ++b) {
        keys.push_back({l, g, b});
        if (staging != nullptr)
          src.push_back(static_cast<uint32_t>((int64_t{b} * L + l) * nkv + g));
      }
    }
  }
  std::vector<uint32_t> slots;
  slots.reserve(n);
  if (!remote_) {
    APR_RETURN_IF_ERROR(WriteLocalTierBlocks(seq, keys, src, staging, &slots));
  } else if (staging == nullptr) {
    APR_RETURN_IF_ERROR(AllocateRemoteTierBlocks(seq, keys, count, &slots));
  } else {
    APR_RETURN_IF_ERROR(WriteRemoteTierBlocks(seq, keys, src, staging, &slots));
  }
  return SetTierSlots(seq, first, full, slots);
}

// Local: slots from the pinned pool, the bytes gathered into it through its mapping.
absl::Status CudaDecoder::WriteLocalTierBlocks(CudaSequence& seq,
                                               const std::vector<kvstore::BlockKey>& keys,
                                               const std::vector<uint32_t>& src,
                                               const __nv_bfloat16* staging,
                                               std::vector<uint32_t>* slots) {
  const int64_t n = static_cast<int64_t>(keys.size());
  const int64_t bb = BlockBytes();
  auto s = local_->store->AllocateBlocks(seq.tier_id, keys);
  if (!s.ok()) return s.status();
  *slots = *std::move(s);
  if (staging != nullptr) {
    DeviceBuffer<uint32_t> lists;
    APR_RETURN_IF_ERROR(AllocZ(&lists, 2 * n, 0));
    APR_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(lists.get(), src.data(), n * sizeof(uint32_t), cudaMemcpyHostToDevice));
    APR_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(lists.get() + n, slots->data(), n * sizeof(uint32_t), cudaMemcpyHostToDevice));
    APR_CUDA_RETURN_IF_ERROR(
        kvstore::LaunchGatherBlocks(staging, lists.get(), local_->mapped->device_pointer(),
                                    lists.get() + n, static_cast<int32_t>(n), bb, stream_));
    APR_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    host_stats_.blocks_written += n;
  }
  return absl::OkStatus();
}

// Slots only (the benchmark): one call per layer keeps the reply small.
absl::Status CudaDecoder::AllocateRemoteTierBlocks(CudaSequence& seq,
                                                   const std::vector<kvstore::BlockKey>& keys,
                                                   int count, std::vector<uint32_t>* slots) {
  const ModelConfig& c = config();
  const int L = c.num_hidden_layers, nkv = c.num_key_value_heads;
  for (int l = 0; l < L; ++l) {
    const int64_t per = int64_t{nkv} * count;
    auto s = remote_tier_->AllocateBlocks(seq.tier_id,
                                          absl::MakeConstSpan(keys).subspan(int64_t{l} * per, per));
    if (!s.ok()) return s.status();
    slots->insert(slots->end(), s->begin(), s->end());
  }
  return absl::OkStatus();
}

// Through a pinned bounce buffer (mapped for the gather kernel, registered with UCX),
// a chunk at a time: gather from staging, then AppendBlocks + UCX puts.
absl::Status CudaDecoder::WriteRemoteTierBlocks(CudaSequence& seq,
                                                const std::vector<kvstore::BlockKey>& keys,
                                                const std::vector<uint32_t>& src,
                                                const __nv_bfloat16* staging,
                                                std::vector<uint32_t>* slots) {
  const int64_t n = static_cast<int64_t>(keys.size());
  const int64_t bb = BlockBytes();
  constexpr int64_t kChunk = 2048;
  auto bounce = kvstore::HostRegion::Allocate(kChunk * bb, true);
  if (!bounce.ok()) return bounce.status();
  auto mapped = kvstore::MappedHostMemory::Register(bounce->data(), bounce->size());
  if (!mapped.ok()) return mapped.status();
  APR_RETURN_IF_ERROR(remote_tier_->RegisterStaging(bounce->data(), bounce->size()));
  DeviceBuffer<uint32_t> list;
  absl::Status st = AllocZ(&list, kChunk, 0);
  for (int64_t first = 0; st.ok() && first < n; first += kChunk) {
    const int64_t m = std::min(kChunk, n - first);
    if (cudaError_t e = cudaMemcpy(list.get(), src.data() + first, m * sizeof(uint32_t),
                                   cudaMemcpyHostToDevice);
        e != cudaSuccess) {
      st = CudaStatus(e, "cudaMemcpy", __FILE__, __LINE__);
      break;
    }
    cudaError_t e = kvstore::LaunchGatherBlocks(staging, list.get(), (*mapped)->device_pointer(),
                                                nullptr, static_cast<int32_t>(m), bb, stream_);
    if (e == cudaSuccess) e = cudaStreamSynchronize(stream_);
    if (e != cudaSuccess) {
      st = CudaStatus(e, "gather to the bounce buffer", __FILE__, __LINE__);
      break;
    }
    std::vector<const std::byte*> ptrs(m);
    for (int64_t i = 0; i < m; ++i) ptrs[i] = bounce->data() + i * bb;
    auto s =
        remote_tier_->WriteBlocks(seq.tier_id, absl::MakeConstSpan(keys).subspan(first, m), ptrs);
    if (!s.ok()) {
      st = s.status();
      break;
    }
    slots->insert(slots->end(), s->begin(), s->end());
  }
  remote_tier_->UnregisterStaging(bounce->data());
  mapped->reset();
  APR_RETURN_IF_ERROR(st);
  host_stats_.blocks_written += n;
  return absl::OkStatus();
}

// `slots` (table by table, as the keys) into the device's tier table, which is
// block-major: [block][layer][kv head].
absl::Status CudaDecoder::SetTierSlots(CudaSequence& seq, int first, int full,
                                       const std::vector<uint32_t>& slots) {
  const ModelConfig& c = config();
  const int L = c.num_hidden_layers, nkv = c.num_key_value_heads;
  const int count = full - first;
  const int64_t n = int64_t{count} * L * nkv;
  if (static_cast<int64_t>(slots.size()) != n)
    return absl::InternalError("the tier returned the wrong number of slots");
  std::vector<uint32_t> table(n);
  int64_t i = 0;
  for (int l = 0; l < L; ++l)
    for (int g = 0; g < nkv; ++g)
      for (int b = 0; b < count; ++b) table[(int64_t{b} * L + l) * nkv + g] = slots[i++];
  APR_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(tier_table_.get() + (int64_t{seq.slot} * max_blocks_ + first) * L * nkv,
                 table.data(), n * sizeof(uint32_t), cudaMemcpyHostToDevice));
  seq.tier_blocks = full;
  return absl::OkStatus();
}

}  // namespace apr::cuda
