// The dense layers of an offloaded decoder (SparseOptions::dense_layers with the KV cache
// in the storage tier; docs/CUDA.md "Dense layers with an offloaded cache"): their whole
// KV stays resident in a pool of its own, which their dense attention reads. The tier
// still receives their complete blocks, so it keeps every layer's cache; this kernel is
// that write-back for a decode step whose token completes a block.
#ifndef APRUNTIME_BACKENDS_CUDA_DENSE_LAYER_KERNELS_H_
#define APRUNTIME_BACKENDS_CUDA_DENSE_LAYER_KERNELS_H_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backends/cuda/rope_append.h"

namespace apr::cuda {

struct DenseWriteBackArgs {
  int batch = 0, layer = 0, layers = 0, kv_heads = 0, head_dim = 0, max_blocks = 0;
  const int32_t* context_lens = nullptr;  // [batch] this step's (the new token included)
  const int32_t* seq_slots = nullptr;     // [batch]
  const __nv_bfloat16* pool = nullptr;    // the dense layers' resident pool, through `table`
  SlotTable table;
  // [batch][layers][kv_heads] destination slot of the completed block (the step's
  // write-back slots, CudaDecoder::d_wb_); kNoTierSlot: none this step.
  const uint32_t* wb_slots = nullptr;
  void* dst = nullptr;  // slots of 2 * 16 * head_dim bf16 (the mapped tier, or the GPU pool)
  // Local tier: the destination is the block's tier slot, noted in the tier table
  // ([sequence slots][max_blocks][layers][kv_heads]); null for remote (the host notes it).
  uint32_t* tier = nullptr;
  unsigned long long* counters = nullptr;  // kCounterWrittenBack += blocks written
};

// One CTA per (KV head, batch entry): when context_lens[b] % 16 == 0 and a slot is given,
// copies block (len - 1) / 16 of layer `layer` to it.
cudaError_t LaunchDenseWriteBack(const DenseWriteBackArgs& a, cudaStream_t stream);

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_DENSE_LAYER_KERNELS_H_
