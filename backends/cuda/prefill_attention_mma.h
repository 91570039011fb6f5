// Prefill attention and the history's initial rows on the tensor cores for head dims 64
// and 128 (prefill_attention_mma.cu); LaunchPrefillAttention and LaunchPrefillHistory pick
// them where they apply.
#ifndef APRUNTIME_BACKENDS_CUDA_PREFILL_ATTENTION_MMA_H_
#define APRUNTIME_BACKENDS_CUDA_PREFILL_ATTENTION_MMA_H_

#include <cuda_runtime.h>

#include "backends/cuda/prefill_attention.h"

namespace apr::cuda {

bool PrefillAttentionMmaSupported(int head_dim);
cudaError_t LaunchPrefillAttentionMma(const PrefillAttentionArgs& a, cudaStream_t stream);
// The history rows only (the caller clears them first); needs PrefillHistoryArgs::scratch.
cudaError_t LaunchPrefillHistoryMma(const PrefillHistoryArgs& a, cudaStream_t stream);

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_PREFILL_ATTENTION_MMA_H_
