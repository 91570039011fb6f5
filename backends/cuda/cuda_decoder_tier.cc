// The storage tier's side of an offloaded sequence (docs/CUDA.md "KV offload"): a sequence
// created in the tier (gpu_kv_tier.h), and its complete blocks written there (or only given
// slots) with the device's table of their tier slots.
#include <atomic>
#include <cstdint>
#include <utility>
#include <vector>

#include "backends/cuda/block_rules.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_decoder.h"
#include "backends/cuda/cuda_decoder_internal.h"
#include "kvstore/client/tier_client.h"

namespace apr::cuda {
namespace {

std::atomic<uint32_t> g_tier_sequences{0};

}  // namespace

absl::Status CudaDecoder::CreateTierSequence(CudaSequence& seq) {
  const ModelConfig& c = config();
  const int L = c.num_hidden_layers, nkv = c.num_key_value_heads;
  if (seq.in_tier) return absl::FailedPreconditionError("the sequence is in the tier already");
  seq.tier_id = kvstore::NewTierSequenceId(g_tier_sequences.fetch_add(1));
  APR_RETURN_IF_ERROR(tier_->CreateSequence(seq.tier_id, L, nkv));
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
  auto slots = staging != nullptr ? tier_->WriteBlocks(seq.tier_id, keys, src, staging)
                                  : tier_->AllocateBlocks(seq.tier_id, keys);
  if (!slots.ok()) return slots.status();
  if (staging != nullptr) host_stats_.blocks_written += n;
  return SetTierSlots(seq, first, full, *slots);
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
