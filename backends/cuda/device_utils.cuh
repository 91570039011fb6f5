// Small device helpers shared by the kernels: 16-byte bf16 vectors, warp reductions.
#ifndef APRUNTIME_BACKENDS_CUDA_DEVICE_UTILS_CUH_
#define APRUNTIME_BACKENDS_CUDA_DEVICE_UTILS_CUH_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

namespace apr::cuda {

using bf16 = __nv_bfloat16;

constexpr float kLog2e = 1.4426950408889634f;

__host__ __device__ constexpr int CeilDivInt(int a, int b) { return (a + b - 1) / b; }

// Programmatic dependent launch (sm_90): a kernel launched with the
// programmatic-stream-serialization attribute may start while the previous kernel in the
// stream still runs; PdlWait blocks until that kernel has finished and its writes are
// visible (a no-op for kernels launched without the attribute). PdlTrigger lets the next
// kernel's CTAs launch once every CTA of this one has started.
__device__ __forceinline__ void PdlWait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void PdlTrigger() { asm volatile("griddepcontrol.launch_dependents;"); }

// kernel<<<grid, block, 0, stream>>>(args...), launched with programmatic dependent launch
// when `pdl` (the kernel must PdlWait before it reads what the previous kernel wrote).
template <typename... Params, typename... Args>
cudaError_t LaunchMaybePdl(void (*kernel)(Params...), dim3 grid, dim3 block, bool pdl,
                           cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.stream = stream;
  cudaLaunchAttribute attr;
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  if (pdl) {
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
  }
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

// Eight bf16 values (one 16-byte load) widened to float.
__device__ __forceinline__ void Bf16x8ToFloat(const uint4& v, float (&f)[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 p = __bfloat1622float2(h[i]);
    f[2 * i] = p.x;
    f[2 * i + 1] = p.y;
  }
}

__device__ __forceinline__ uint4 FloatToBf16x8(const float (&f)[8]) {
  uint4 v;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
  return v;
}

// Two floats rounded to a bf16 pair (lo in the low half), as one mma operand register.
__device__ __forceinline__ uint32_t PackBf16x2(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Asynchronous copies global -> shared (sm_80+) of 4 or 16 bytes; `bytes` 0 writes zeros
// instead of reading. Completed by groups: CpAsyncCommit, then CpAsyncWait<pending>.
__device__ __forceinline__ void CpAsync4(void* dst, const void* src, int bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(
                   static_cast<uint32_t>(__cvta_generic_to_shared(dst))),
               "l"(src), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void CpAsync16(void* dst, const void* src, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(
                   static_cast<uint32_t>(__cvta_generic_to_shared(dst))),
               "l"(src), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void CpAsyncCommit() {
  asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int kPending>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending) : "memory");
}

// 16-byte load of what the previous kernel wrote, in kernels launched with PDL: an
// ordinary (coherent) load, in volatile asm so that it stays after PdlWait. Not __ldg: PTX
// allows its non-coherent path only for data that does not change while the kernel runs,
// and under PDL the kernel starts while its input is still being written (the tensor-core
// GEMV read stale inputs through it; kernels_test UnderPdlReadsWhatThePreviousKernelWrote).
__device__ __forceinline__ uint4 LoadAfterWait(const void* p) {
  uint4 v;
  asm volatile("ld.global.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p)
               : "memory");
  return v;
}

// Streaming 16-byte load that skips L1 (weights and KV are read once per step).
__device__ __forceinline__ uint4 LoadStreaming(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// c += a b on the tensor cores: A 16x16 bf16 (row-major fragment a), B 16x8 bf16 (column
// fragment b0, b1), C 16x8 float32 (PTX ISA "mma.m16n8k16" fragment layouts).
__device__ __forceinline__ void Mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
      "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <int kWidth = 32>
__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = kWidth / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <int kWidth = 32>
__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = kWidth / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Max over each aligned group of 16 lanes.
__device__ __forceinline__ float XorMaxHalf(float v) {
#pragma unroll
  for (int o = 8; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over all threads of the block; `scratch` holds one float per warp. Every thread gets
// the result.
__device__ __forceinline__ float BlockSum(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = (blockDim.x + 31) / 32;
  v = WarpSum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = 0;
  for (int w = 0; w < warps; ++w) t += scratch[w];
  return t;
}

// Exclusive prefix sum of `v` over a CTA of kBlockThreads threads (a multiple of 32):
// returns this thread's offset; *total gets the CTA's sum. `scratch` holds kBlockThreads /
// 32 ints in shared memory. Every thread of the CTA must call it (it synchronises).
template <int kBlockThreads>
__device__ int BlockExclusiveScan(int v, int* scratch, int* total) {
  static_assert(kBlockThreads % 32 == 0, "whole warps");
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  int x = v;
#pragma unroll
  for (int o = 1; o < 32; o *= 2) {
    const int y = __shfl_up_sync(0xffffffffu, x, o);
    if (lane >= o) x += y;
  }
  __syncthreads();
  if (lane == 31) scratch[warp] = x;
  __syncthreads();
  int before = 0, all = 0;
#pragma unroll
  for (int w = 0; w < kBlockThreads / 32; ++w) {
    const int s = scratch[w];
    if (w < warp) before += s;
    all += s;
  }
  *total = all;
  return before + x - v;
}

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_DEVICE_UTILS_CUH_
