// predictor-hybrid in the CUDA decoder (SparseOptions::hybrid; hybrid_select.h). The CNN
// predicts HybridCnnBlocks(k) blocks one step ahead as usual (TopkArgs::query_blocks);
// inside the step, once a sparse layer's query is known, the query's Quest bound picks the
// rest among the candidates the CNN left out, and the layer's list is rebuilt with them.
// Offloaded, those blocks cannot be prefetched (the query did not exist a step earlier):
// the ones the GPU block cache does not hold are fetched from the tier on the compute
// stream before the layer's attention, into slots of their own past the cache, so the
// cache's plan and its CPU model stay as they are. A remote tier would need a host round
// trip per layer for that fetch: refused.
#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "backends/cuda/block_rules.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_decoder.h"
#include "backends/cuda/cuda_decoder_internal.h"
#include "backends/cuda/predictor/hybrid_select.h"

namespace apr::cuda {

absl::Status CudaDecoder::CheckHybrid() const {
  if (!opt_.sparse.hybrid) return absl::OkStatus();
  if (!sparse_capable_)
    return absl::InvalidArgumentError("sparse.hybrid (predictor-hybrid) needs sparse attention");
  if (opt_.placement == KvPlacement::kRemote) {
    return absl::UnimplementedError(
        "predictor-hybrid with a remote KV cache: the query's blocks are known only inside "
        "the step, and fetching them from a storage node there would wait for the host once "
        "per layer; use placement kHost (the worker's pinned RAM) or a resident cache");
  }
  if (QueryStride() > kQuerySelectMaxBlocks) {
    return absl::InvalidArgumentError(absl::StrCat(
        "predictor-hybrid takes at most ", kQuerySelectMaxBlocks, " query blocks (a budget of ",
        kSinkTokens + kLocalTokens + 4 * kBlockTokens * kQuerySelectMaxBlocks + 4 * kBlockTokens -
            1,
        " tokens)"));
  }
  const ModelConfig& c = config();
  const int64_t per_image =
      MaxListLength(KBlocksMax()) + opt_.offload.extra_cache_slots + QueryStride();
  if (offload_ &&
      int64_t{opt_.max_sequences} * c.num_hidden_layers * c.num_key_value_heads * per_image >
          std::numeric_limits<int32_t>::max())
    return absl::UnimplementedError("more than 2^31 GPU block cache and query slots");
  return absl::OkStatus();
}

int64_t CudaDecoder::QueryAreaSlots() const {
  if (!opt_.sparse.hybrid || !offload_) return 0;
  const ModelConfig& c = config();
  return int64_t{opt_.max_sequences} * c.num_hidden_layers * c.num_key_value_heads * QueryStride();
}

absl::Status CudaDecoder::AllocateHybrid() {
  const int fill = opt_.debug_fill_byte;
  const int64_t rows = int64_t{opt_.max_sequences} * config().num_key_value_heads;
  APR_RETURN_IF_ERROR(Alloc(fill, &query_blocks_, rows * QueryStride()));
  APR_RETURN_IF_ERROR(Alloc(fill, &query_counts_, rows));
  APR_RETURN_IF_ERROR(Alloc(fill, &query_slots_, rows * QueryStride()));
  APR_RETURN_IF_ERROR(Alloc(fill, &query_fetch_count_, 1));
  APR_RETURN_IF_ERROR(Alloc(fill, &query_fetch_src_, rows * QueryStride()));
  APR_RETURN_IF_ERROR(Alloc(fill, &query_fetch_dst_, rows * QueryStride()));
  return absl::OkStatus();
}

absl::Status CudaDecoder::EnqueueQueryBlocks(const StepKey& key, int l) {
  const int first_sparse = FirstListedLayer(key);
  if (!key.sparse || l < first_sparse) return absl::OkStatus();
  const ModelConfig& c = config();
  const int li = l - first_sparse;
  QuerySelectArgs qa;
  qa.batch = key.batch;
  qa.num_heads = c.num_attention_heads;
  qa.num_kv_heads = c.num_key_value_heads;
  qa.head_dim = c.head_dim;
  qa.layer = l;
  qa.sel_layer = li;
  qa.k_blocks = PredictedBlocks(opt_.sparse.budget_tokens);
  qa.q = q_.get();
  qa.context_lens = DeviceStep().context_lens;
  qa.seq_slots = DeviceStep().seq_slots;
  qa.sel = predictor_->SelectionView();
  qa.sel_checked = true;  // by the step's first BuildLists
  qa.summary = key_summary_.get();
  qa.summary_layers = c.num_hidden_layers;
  qa.max_blocks = max_blocks_;
  qa.blocks = query_blocks_.get();
  qa.counts = query_counts_.get();
  qa.stride = QueryStride();
  qa.error = error_flag_.get();
  if (offload_) {
    APR_CUDA_RETURN_IF_ERROR(
        cudaMemsetAsync(query_fetch_count_.get(), 0, sizeof(int32_t), stream_));
    qa.cache = Cache();
    qa.tier = tier_table_.get();
    qa.query_slot_base = cache_pool_slots_;  // no write-back area: a remote tier is refused
    qa.slots = query_slots_.get();
    qa.fetch_src = query_fetch_src_.get();
    qa.fetch_dst = query_fetch_dst_.get();
    qa.fetch_count = query_fetch_count_.get();
    qa.max_fetch = static_cast<int>(query_fetch_src_.size());
    qa.counters = counters_.get();
  }
  APR_CUDA_RETURN_IF_ERROR(LaunchQuerySelect(qa, stream_));
  if (offload_) {
    // On the compute stream: the attention below needs these blocks now.
    APR_RETURN_IF_ERROR(
        tier_->FetchListOnCompute(qa.fetch_src, qa.fetch_dst, qa.fetch_count, qa.max_fetch));
  }
  BuildListsArgs bl = ListsArgs(key);
  bl.layer_begin = li;
  bl.layer_count = 1;
  bl.sel_checked = true;
  bl.extra_blocks = query_blocks_.get();
  bl.extra_counts = query_counts_.get();
  bl.extra_slots = offload_ ? query_slots_.get() : nullptr;
  bl.extra_stride = QueryStride();
  APR_CUDA_RETURN_IF_ERROR(LaunchBuildLists(bl, stream_));
  return absl::OkStatus();
}

}  // namespace apr::cuda
