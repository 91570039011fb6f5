// cuBLAS for the projections of prefill chunks (and of decode batches when the GEMV path
// is off): y = x W^T with bf16 operands and float32 accumulation.
#ifndef APRUNTIME_BACKENDS_CUDA_GEMM_H_
#define APRUNTIME_BACKENDS_CUDA_GEMM_H_

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <memory>

#include "absl/status/statusor.h"
#include "backends/cuda/device_buffer.h"

namespace apr::cuda {

class Gemm {
 public:
  // A handle bound to `stream`, with its own workspace (so graph capture never allocates).
  static absl::StatusOr<std::unique_ptr<Gemm>> Create(cudaStream_t stream);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // y[n][ldy] (float32) = x[n][k] w[m][k]^T + beta * y.
  absl::Status LinearF32(const __nv_bfloat16* w, int m, int k, const __nv_bfloat16* x, int n,
                         float* y, int ldy, float beta);
  // y[n][m] (bf16) = x[n][k] w[m][k]^T.
  absl::Status LinearBf16(const __nv_bfloat16* w, int m, int k, const __nv_bfloat16* x, int n,
                          __nv_bfloat16* y);

 private:
  Gemm() = default;
  cublasHandle_t handle_ = nullptr;
  DeviceBuffer<char> workspace_;
};

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_GEMM_H_
