// The greedy pick of each row of the logits on the device, so that a step whose rows are
// all greedy brings back one id per row instead of [rows][vocab] floats.
#ifndef APRUNTIME_BACKENDS_CUDA_ARGMAX_ROWS_H_
#define APRUNTIME_BACKENDS_CUDA_ARGMAX_ROWS_H_

#include <cuda_runtime.h>

#include <cstdint>

namespace apr::cuda {

// out[r] = the arg max of logits[r][0, vocab): the lowest index among equal maxima, the
// rule of ArgMaxToken (runtime/sampling.h), so a greedy stream is the same token for token
// whichever side picks. Rows must hold no NaN (a NaN is never picked; an all-NaN row gives
// 0). One CTA per row.
cudaError_t LaunchArgMaxRows(const float* logits, int rows, int vocab, int32_t* out,
                             cudaStream_t stream);

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_ARGMAX_ROWS_H_
