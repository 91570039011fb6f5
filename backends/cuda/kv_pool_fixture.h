// The GPU kernel tests' KV slot pool (kernels_test.cc, predictor/predictor_kernels_test.cc).
#ifndef APRUNTIME_BACKENDS_CUDA_KV_POOL_FIXTURE_H_
#define APRUNTIME_BACKENDS_CUDA_KV_POOL_FIXTURE_H_

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "backends/cuda/rope_append.h"
#include "backends/cuda/test_util.h"

namespace apr::cuda::testing {

inline std::vector<float> Rounded(std::vector<float> v) {
  for (float& x : v) x = RoundBf16(x);
  return v;
}

// A slot pool with random bf16 contents and a shuffled group table, as the decoder lays
// them out: slot = group * layers * kv_heads + layer * kv_heads + g.
struct PoolFixture {
  int layers, nkv, hd, max_blocks, slots_seq;
  std::vector<float> pool;      // host copy (bf16 values)
  std::vector<int32_t> groups;  // [seqs][max_blocks]
  Dev<uint16_t> dpool;
  Dev<int32_t> dgroups;

  PoolFixture(std::mt19937_64& rng, int seqs, int layers, int nkv, int hd, int max_blocks)
      : layers(layers), nkv(nkv), hd(hd), max_blocks(max_blocks), slots_seq(seqs) {
    const int ngroups = seqs * max_blocks + 3;
    pool = Rounded(Uniform(rng, size_t(ngroups) * layers * nkv * 2 * 16 * hd));
    std::vector<int32_t> perm(ngroups);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    groups.assign(perm.begin(), perm.begin() + size_t(seqs) * max_blocks);
    dpool = DevBf16(pool);
    dgroups = Dev<int32_t>(groups);
  }
  SlotTable Table() const { return SlotTable{dgroups.get(), max_blocks, layers * nkv, nkv}; }
  int64_t Slot(int seq, int layer, int g, int block) const {
    return int64_t(groups[size_t(seq) * max_blocks + block]) * layers * nkv + layer * nkv + g;
  }
  const float* K(int64_t slot, int t) const { return &pool[(slot * 2 * 16 + t) * hd]; }
  const float* V(int64_t slot, int t) const { return &pool[(slot * 2 * 16 + 16 + t) * hd]; }
};

}  // namespace apr::cuda::testing

#endif  // APRUNTIME_BACKENDS_CUDA_KV_POOL_FIXTURE_H_
