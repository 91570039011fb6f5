#include <chrono>
#include <thread>

#include "bench/gpu/sm_reservation.h"

namespace apr::bench {
namespace {

// A CTA holding one SM: its dynamic shared memory is the SM's whole opt-in size, so no
// other CTA can be placed beside it. One thread polls the host's release flag; a time
// limit keeps a benchmark that forgets to release from hanging the GPU, and is reported
// (host[2]) so that a measurement it cut short is not taken for a held one.
__global__ void HoldSmKernel(volatile int32_t* host, unsigned long long limit_ns) {
  extern __shared__ unsigned char unused[];
  if (threadIdx.x != 0) return;
  unsigned long long t0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  atomicAdd_system(const_cast<int32_t*>(host) + 1, 1);
  for (;;) {
    if (host[0] != 0) break;
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    if (t - t0 > limit_ns) {
      host[2] = 1;
      break;
    }
    __nanosleep(20000);
  }
}

constexpr unsigned long long kLimitNs = 120ull * 1000 * 1000 * 1000;

}  // namespace

SmReservation::~SmReservation() {
  Release();
  if (host_ != nullptr) cudaFreeHost(host_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

cudaError_t SmReservation::Hold(int sms) {
  if (held_ != 0 || sms <= 0) return cudaSuccess;
  int dev = 0, smem = 0, count = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess)
    e = cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, dev);
  if (e != cudaSuccess) return e;
  if (sms >= count) return cudaErrorInvalidValue;
  // Non-blocking: the legacy default stream's implicit synchronisation must not wait on it.
  if (stream_ == nullptr) e = cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking);
  if (e == cudaSuccess && host_ == nullptr)
    e = cudaHostAlloc(&host_, 3 * sizeof(int32_t), cudaHostAllocMapped);
  if (e == cudaSuccess)
    e = cudaFuncSetAttribute(HoldSmKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (e != cudaSuccess) return e;
  volatile int32_t* h = host_;
  h[0] = h[1] = h[2] = 0;
  int32_t* dh = nullptr;
  e = cudaHostGetDevicePointer(&dh, host_, 0);
  if (e != cudaSuccess) return e;
  HoldSmKernel<<<sms, 32, smem, stream_>>>(dh, kLimitNs);
  e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  held_ = sms;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (h[1] < sms) {
    if (std::chrono::steady_clock::now() > deadline) return cudaErrorLaunchTimeout;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return cudaSuccess;
}

cudaError_t SmReservation::Release() {
  if (held_ == 0) return cudaSuccess;
  volatile int32_t* h = host_;
  h[0] = 1;
  held_ = 0;
  const cudaError_t e = cudaStreamSynchronize(stream_);
  return e != cudaSuccess ? e : h[2] != 0 ? cudaErrorLaunchTimeout : cudaSuccess;
}

}  // namespace apr::bench
