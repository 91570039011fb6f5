#include "backends/cuda/device_utils.cuh"
#include "backends/cuda/fill.h"

namespace apr::cuda {
namespace {

__device__ __forceinline__ float HashUniform(uint64_t seed, uint64_t i) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + i;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(static_cast<int64_t>(z >> 40) - (1ll << 23)) * (1.0f / (1 << 23));
}

__global__ void UniformBf16Kernel(bf16* x, int64_t n, uint64_t seed, float scale) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] = __float2bfloat16_rn(scale * HashUniform(seed, i));
}

__global__ void UniformF32Kernel(float* x, int64_t n, uint64_t seed, float scale, float offset) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] = offset + scale * HashUniform(seed, i);
}

__global__ void ConstF32Kernel(float* x, int64_t n, float v) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] = v;
}

__global__ void ConstBf16Kernel(uint16_t* x, int64_t n, uint16_t v) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] = v;
}

__global__ void ReadAllKernel(const uint4* p, int64_t n, unsigned* sink) {
  unsigned acc = 0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  for (; i + 3 * stride < n; i += 4 * stride) {
    const uint4 a = LoadStreaming(p + i), b = LoadStreaming(p + i + stride),
                c = LoadStreaming(p + i + 2 * stride), d = LoadStreaming(p + i + 3 * stride);
    acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^
           d.w;
  }
  for (; i < n; i += stride) {
    const uint4 a = LoadStreaming(p + i);
    acc ^= a.x ^ a.y ^ a.z ^ a.w;
  }
  if (acc == 0x9e3779b9u) *sink = acc;  // practically never; keeps the loads alive
}

int Blocks(int64_t n) {
  const int64_t b = (n + 255) / 256;
  return static_cast<int>(b < 65536 ? (b < 1 ? 1 : b) : 65536);
}

}  // namespace

cudaError_t ReadAll(const void* p, int64_t bytes, unsigned* sink, cudaStream_t stream) {
  int sms = 0, dev = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  ReadAllKernel<<<sms * 8, 256, 0, stream>>>(static_cast<const uint4*>(p), bytes / 16, sink);
  return cudaGetLastError();
}

cudaError_t FillUniformBf16(bf16* x, int64_t n, uint64_t seed, float scale, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  UniformBf16Kernel<<<Blocks(n), 256, 0, stream>>>(x, n, seed, scale);
  return cudaGetLastError();
}

cudaError_t FillUniformF32(float* x, int64_t n, uint64_t seed, float scale, float offset,
                           cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  UniformF32Kernel<<<Blocks(n), 256, 0, stream>>>(x, n, seed, scale, offset);
  return cudaGetLastError();
}

cudaError_t FillF32(float* x, int64_t n, float value, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  ConstF32Kernel<<<Blocks(n), 256, 0, stream>>>(x, n, value);
  return cudaGetLastError();
}

cudaError_t FillBf16Bits(bf16* x, int64_t n, uint16_t bits, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  ConstBf16Kernel<<<Blocks(n), 256, 0, stream>>>(reinterpret_cast<uint16_t*>(x), n, bits);
  return cudaGetLastError();
}

}  // namespace apr::cuda
