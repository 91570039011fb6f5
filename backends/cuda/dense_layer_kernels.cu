#include "backends/cuda/block_rules.h"
#include "backends/cuda/dense_layer_kernels.h"
#include "backends/cuda/device_utils.cuh"
#include "backends/cuda/offload_kernels.h"

namespace apr::cuda {
namespace {

constexpr int kThreads = 128;

__global__ void __launch_bounds__(kThreads) DenseWriteBackKernel(const DenseWriteBackArgs a) {
  const int g = blockIdx.x, b = blockIdx.y;
  const int len = a.context_lens[b];
  if (len % kBlockTokens != 0) return;
  const uint32_t dst = a.wb_slots[(static_cast<int64_t>(b) * a.layers + a.layer) * a.kv_heads + g];
  if (dst == kNoTierSlot) return;
  const int seq = a.seq_slots[b], blk = (len - 1) / kBlockTokens;
  const int64_t vecs = 2 * kBlockTokens * a.head_dim / 8;  // 16-byte vectors per block
  const uint4* src =
      reinterpret_cast<const uint4*>(a.pool + a.table.Slot(seq, a.layer, g, blk) * vecs * 8);
  uint4* out = reinterpret_cast<uint4*>(a.dst) + static_cast<int64_t>(dst) * vecs;
  for (int64_t i = threadIdx.x; i < vecs; i += kThreads) out[i] = src[i];
  if (threadIdx.x == 0) {
    if (a.tier != nullptr) {
      a.tier[((static_cast<int64_t>(seq) * a.max_blocks + blk) * a.layers + a.layer) * a.kv_heads +
             g] = dst;
    }
    atomicAdd(a.counters + kCounterWrittenBack, 1ull);
  }
}

}  // namespace

cudaError_t LaunchDenseWriteBack(const DenseWriteBackArgs& a, cudaStream_t stream) {
  if (a.batch == 0) return cudaSuccess;
  if (a.head_dim % 8 != 0 || a.layer < 0 || a.layer >= a.layers) return cudaErrorInvalidValue;
  DenseWriteBackKernel<<<dim3(a.kv_heads, a.batch), kThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace apr::cuda
