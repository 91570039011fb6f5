// Dense layers (SparseOptions::dense_layers, the reference's skip_2layer) with an offloaded
// KV cache (docs/CUDA.md "Dense layers with an offloaded cache"). A dense layer attends to
// every block at every step, so its blocks cannot live in the tier: moving its whole cache
// each step is what offload exists to avoid. Their KV stays resident in a pool of their
// own (every block of every sequence slot, dense_layers / layers of the full cache), and
// their attention reads it there. The tier still receives their complete blocks (prefill
// from staging, decode by LaunchDenseWriteBack), so it keeps every layer's cache.
#include <vector>

#include "backends/cuda/block_rules.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_decoder.h"
#include "backends/cuda/cuda_decoder_internal.h"
#include "backends/cuda/dense_layer_kernels.h"
#include "kvstore/cuda/gather_blocks.h"

namespace apr::cuda {

// Sequence slot s's block b is group s * max_blocks + b: a fixed reservation per slot, so
// the table never changes and needs no allocator.
absl::Status CudaDecoder::AllocateDenseLayerPool() {
  const ModelConfig& c = config();
  const int nkv = c.num_key_value_heads, dl = opt_.sparse.dense_layers;
  const int64_t groups = int64_t{opt_.max_sequences} * max_blocks_;
  APR_RETURN_IF_ERROR(
      Alloc(opt_.debug_fill_byte, &dense_pool_, groups * dl * nkv * 2 * kBlockTokens * c.head_dim));
  std::vector<int32_t> table(groups);
  for (int64_t i = 0; i < groups; ++i) table[i] = static_cast<int32_t>(i);
  APR_RETURN_IF_ERROR(Alloc(opt_.debug_fill_byte, &dense_table_, groups));
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpy(dense_table_.get(), table.data(), groups * sizeof(int32_t),
                                      cudaMemcpyHostToDevice));
  return absl::OkStatus();
}

SlotTable CudaDecoder::DenseLayerTable() const {
  const int nkv = config().num_key_value_heads;
  return SlotTable{dense_table_.get(), max_blocks_, opt_.sparse.dense_layers * nkv, nkv};
}

// The blocks this prompt part wrote ([start / 16, NumBlocks(len)): an earlier part's
// partial last block again, and the partial tail the decode steps append to), from the
// staging pool (group b = block b) into the dense layers' pool.
absl::Status CudaDecoder::KeepDenseLayersResident(CudaSequence& seq, int64_t start) {
  const int dl = opt_.sparse.dense_layers;
  if (!offload_ || dl == 0) return absl::OkStatus();
  const ModelConfig& c = config();
  const int L = c.num_hidden_layers, nkv = c.num_key_value_heads;
  const int first = static_cast<int>(start / kBlockTokens);
  const int end = NumBlocks(static_cast<int>(seq.len));
  if (end <= first) return absl::OkStatus();
  const SlotTable dst = DenseLayerTable();
  std::vector<uint32_t> lists;  // sources, then destinations
  std::vector<uint32_t> dsts;
  for (int b = first; b < end; ++b) {
    for (int l = 0; l < dl; ++l) {
      for (int g = 0; g < nkv; ++g) {
        lists.push_back(static_cast<uint32_t>((int64_t{b} * L + l) * nkv + g));
        dsts.push_back(static_cast<uint32_t>(
            (int64_t{seq.slot} * max_blocks_ + b) * dst.slots_per_group + l * nkv + g));
      }
    }
  }
  const int64_t n = static_cast<int64_t>(dsts.size());
  lists.insert(lists.end(), dsts.begin(), dsts.end());
  DeviceBuffer<uint32_t> d_lists;
  APR_RETURN_IF_ERROR(AllocZ(&d_lists, 2 * n, 0));
  APR_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(d_lists.get(), lists.data(), 2 * n * sizeof(uint32_t), cudaMemcpyHostToDevice));
  APR_CUDA_RETURN_IF_ERROR(kvstore::LaunchGatherBlocks(
      seq.staging.get(), d_lists.get(), dense_pool_.get(), d_lists.get() + n,
      static_cast<int32_t>(n), BlockBytes(), stream_));
  APR_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));  // before d_lists is freed
  return absl::OkStatus();
}

// After dense layer `layer`'s RoPE append: the block the step's token completed, to its
// tier slot (local) or the write-back area that AfterOffloadStep stores (remote).
absl::Status CudaDecoder::DenseLayerWriteBack(int batch, int layer) {
  const ModelConfig& c = config();
  DenseWriteBackArgs a;
  a.batch = batch;
  a.layer = layer;
  a.layers = c.num_hidden_layers;
  a.kv_heads = c.num_key_value_heads;
  a.head_dim = c.head_dim;
  a.max_blocks = max_blocks_;
  a.context_lens = DeviceStep().context_lens;
  a.seq_slots = DeviceStep().seq_slots;
  a.pool = dense_pool_.get();
  a.table = DenseLayerTable();
  a.wb_slots = d_wb_.get();
  a.dst = tier_->write_back_destination();
  // Slots given now are recorded by the kernel; the others when the host has stored them.
  a.tier = tier_->writes_back_on_device() ? tier_table_.get() : nullptr;
  a.counters = counters_.get();
  APR_CUDA_RETURN_IF_ERROR(LaunchDenseWriteBack(a, stream_));
  return absl::OkStatus();
}

// A resident block of a dense layer (ReadKvBlock from GPU memory).
absl::StatusOr<std::vector<uint16_t>> CudaDecoder::ReadDenseLayerBlock(const CudaSequence& seq,
                                                                       int layer, int kv_head,
                                                                       int block) const {
  const int64_t elems = BlockBytes() / 2;
  std::vector<uint16_t> out(elems);
  const int64_t slot =
      (int64_t{seq.slot} * max_blocks_ + block) * DenseLayerTable().slots_per_group +
      int64_t{layer} * config().num_key_value_heads + kv_head;
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpy(out.data(), dense_pool_.get() + slot * elems, BlockBytes(),
                                      cudaMemcpyDeviceToHost));
  return out;
}

}  // namespace apr::cuda
