#include "backends/cuda/gemm.h"

#include "backends/cuda/cuda_check.h"

namespace apr::cuda {

absl::StatusOr<std::unique_ptr<Gemm>> Gemm::Create(cudaStream_t stream) {
  std::unique_ptr<Gemm> g(new Gemm());
  APR_CUBLAS_RETURN_IF_ERROR(cublasCreate(&g->handle_));
  APR_CUBLAS_RETURN_IF_ERROR(cublasSetStream(g->handle_, stream));
  constexpr size_t kWorkspace = 32 << 20;
  auto ws = DeviceBuffer<char>::Allocate(kWorkspace);
  if (!ws.ok()) return ws.status();
  g->workspace_ = *std::move(ws);
  APR_CUBLAS_RETURN_IF_ERROR(cublasSetWorkspace(g->handle_, g->workspace_.get(), kWorkspace));
  APR_CUBLAS_RETURN_IF_ERROR(cublasSetMathMode(g->handle_, CUBLAS_DEFAULT_MATH));
  return g;
}

Gemm::~Gemm() {
  if (handle_ != nullptr) cublasDestroy(handle_);
}

// Row-major y[n][m] = x[n][k] w[m][k]^T is column-major y^T[m][n] = w^T... : cuBLAS sees
// w as a k x m column-major matrix (transposed: op T) and x as k x n (op N).
absl::Status Gemm::LinearF32(const __nv_bfloat16* w, int m, int k, const __nv_bfloat16* x, int n,
                             float* y, int ldy, float beta) {
  const float alpha = 1.0f;
  APR_CUBLAS_RETURN_IF_ERROR(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, w,
                                          CUDA_R_16BF, k, x, CUDA_R_16BF, k, &beta, y, CUDA_R_32F,
                                          ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return absl::OkStatus();
}

absl::Status Gemm::LinearBf16(const __nv_bfloat16* w, int m, int k, const __nv_bfloat16* x, int n,
                              __nv_bfloat16* y) {
  const float alpha = 1.0f, beta = 0.0f;
  APR_CUBLAS_RETURN_IF_ERROR(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, w,
                                          CUDA_R_16BF, k, x, CUDA_R_16BF, k, &beta, y, CUDA_R_16BF,
                                          m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return absl::OkStatus();
}

}  // namespace apr::cuda
