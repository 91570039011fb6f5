// On the GPU machine (tag "gpu"): the benchmark's stand-in attention against a float64
// evaluation, so that the timed kernel computes what it claims.
#include "bench/gpu/bench_kernels.h"

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace apr::bench {
namespace {

// bf16 on the host without cuda_bf16.h (whose <nv/target> include @cuda//:headers does
// not list): round to nearest even.
uint16_t ToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}
float FromBf16(uint16_t h) {
  const uint32_t u = uint32_t{h} << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(BenchKernelsTest, SparseAttentionMatchesReference) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) GTEST_SKIP() << "no GPU";
  const int batch = 2, kvh = 2, group = 4, d = 128, per_list = 11, pool_blocks = 40;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  std::vector<uint16_t> pool(int64_t{pool_blocks} * 2 * 16 * d);
  std::vector<float> poolf(pool.size());
  for (size_t i = 0; i < pool.size(); ++i) {
    pool[i] = ToBf16(nd(rng));
    poolf[i] = FromBf16(pool[i]);
  }
  std::vector<float> q(batch * kvh * group * d);
  for (float& x : q) x = nd(rng);
  std::vector<int32_t> slots(batch * kvh * per_list);
  for (int32_t& s : slots) s = rng() % pool_blocks;
  void *dpool, *dq, *dslots, *dpart, *dout;
  ASSERT_EQ(cudaMalloc(&dpool, pool.size() * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dq, q.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dslots, slots.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dout, q.size() * 4), cudaSuccess);
  cudaMemcpy(dpool, pool.data(), pool.size() * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(dq, q.data(), q.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(dslots, slots.data(), slots.size() * 4, cudaMemcpyHostToDevice);
  AttentionArgs a;
  a.batch = batch;
  a.kv_heads = kvh;
  a.group = group;
  a.head_dim = d;
  a.q = static_cast<float*>(dq);
  a.pool = dpool;
  a.slots = static_cast<int32_t*>(dslots);
  a.blocks_per_list = per_list;
  a.blocks_per_split = 3;
  a.out = static_cast<float*>(dout);
  ASSERT_EQ(cudaMalloc(&dpart, AttentionScratchFloats(a) * 4), cudaSuccess);
  a.partial = static_cast<float*>(dpart);
  ASSERT_EQ(LaunchSparseAttention(a, nullptr), cudaSuccess);
  std::vector<float> out(q.size());
  ASSERT_EQ(cudaMemcpy(out.data(), dout, out.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  for (int b = 0; b < batch; ++b) {
    for (int h = 0; h < kvh * group; ++h) {
      const int g = h / group;
      const float* qh = q.data() + (b * kvh * group + h) * d;
      std::vector<double> s, acc(d, 0.0);
      double mx = -1e300, sum = 0;
      for (int i = 0; i < per_list; ++i) {
        const float* blk = poolf.data() + int64_t{slots[(b * kvh + g) * per_list + i]} * 2 * 16 * d;
        for (int t = 0; t < 16; ++t) {
          double dot = 0;
          for (int j = 0; j < d; ++j) dot += double(qh[j]) * blk[t * d + j];
          s.push_back(dot / std::sqrt(double(d)));
          mx = std::max(mx, s.back());
        }
      }
      for (double& x : s) sum += (x = std::exp(x - mx));
      int k = 0;
      for (int i = 0; i < per_list; ++i) {
        const float* blk = poolf.data() + int64_t{slots[(b * kvh + g) * per_list + i]} * 2 * 16 * d;
        for (int t = 0; t < 16; ++t, ++k)
          for (int j = 0; j < d; ++j) acc[j] += s[k] / sum * blk[(16 + t) * d + j];
      }
      for (int j = 0; j < d; ++j) {
        ASSERT_NEAR(out[(b * kvh * group + h) * d + j], acc[j], 2e-3) << b << " " << h << " " << j;
      }
    }
  }
  cudaFree(dpool);
  cudaFree(dq);
  cudaFree(dslots);
  cudaFree(dpart);
  cudaFree(dout);
}

}  // namespace
}  // namespace apr::bench
