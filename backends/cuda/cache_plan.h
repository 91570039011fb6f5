// The GPU block cache's residency rules as host code: the wanted set of a step, the blocks
// a sequence keeps cached after prefill, and a one-image model of the plan kernel
// (offload_kernels.h LaunchCachePlan) that makes the same choices: the same hits, fetches
// and slots. CPU-tested (cache_plan_test); the GPU test compares the kernel's counts with
// it (the block cache fetches only the difference).
#ifndef APRUNTIME_BACKENDS_CUDA_CACHE_PLAN_H_
#define APRUNTIME_BACKENDS_CUDA_CACHE_PLAN_H_

#include <algorithm>
#include <cstdint>
#include <vector>

#include "backends/cuda/block_rules.h"

namespace apr::cuda {

// Blocks a step of context `len` attends to, given its predicted selection `sel`
// (ascending): sink blocks, the selected blocks below the local window, the local window's
// blocks. Ascending and distinct (the kernel's order).
inline std::vector<int32_t> WantedBlocks(int len, const std::vector<int32_t>& sel) {
  const int nb = NumBlocks(len), sb = SinkBlocks(len);
  const int lo = std::max(FirstLocalBlock(len), sb);
  std::vector<int32_t> w;
  for (int b = 0; b < sb; ++b) w.push_back(b);
  for (int32_t b : sel) {
    if (b < lo && b >= sb) w.push_back(b);
  }
  for (int b = lo; b < nb; ++b) w.push_back(b);
  return w;
}

// Blocks kept cached after a sequence of `len` tokens is prefilled (before the first
// step's selection is fetched): the sink and local-window blocks of step len + 1 that
// exist already.
inline std::vector<int32_t> SeedBlocks(int len) {
  const int next = len + 1, existing = NumBlocks(len);
  const int sb = std::min(SinkBlocks(next), existing);
  std::vector<int32_t> out;
  for (int b = 0; b < sb; ++b) out.push_back(b);
  for (int b = std::max(FirstLocalBlock(next), sb); b < existing; ++b) out.push_back(b);
  return out;
}

struct CachePlanCounts {
  int hits = 0;        // predicted blocks already cached
  int predicted = 0;   // predicted blocks (wanted blocks between sink and local window)
  int fetched = 0;     // blocks to fetch from the tier
  int allocated = 0;   // the new tail block: a slot, no fetch
  bool error = false;  // a missing block that is neither complete nor the new tail, or no slot
};

// One image (sequence, layer, KV head) of the GPU block cache.
class CacheImageModel {
 public:
  explicit CacheImageModel(int slots) : tags_(slots, -1), stamps_(slots, 0) {}

  // Blocks in slots 0..n-1, the rest free (LaunchSeedCache); stamps 0.
  void Seed(const std::vector<int32_t>& blocks) {
    std::fill(tags_.begin(), tags_.end(), -1);
    std::fill(stamps_.begin(), stamps_.end(), 0);
    for (size_t i = 0; i < blocks.size() && i < tags_.size(); ++i) tags_[i] = blocks[i];
  }

  CachePlanCounts Plan(int len, const std::vector<int32_t>& sel, bool reuse = true) {
    return PlanWanted(len, WantedBlocks(len, sel), reuse);
  }

  // `wanted`: ascending, distinct (WantedBlocks, or a step's block list).
  CachePlanCounts PlanWanted(int len, const std::vector<int32_t>& wanted, bool reuse = true) {
    CachePlanCounts r;
    const int sb = SinkBlocks(len), lo = std::max(FirstLocalBlock(len), sb);
    const int full = (len - 1) / kBlockTokens;
    std::vector<char> keep(tags_.size(), 0);
    std::vector<int32_t> missing;
    for (int32_t b : wanted) {
      const bool predicted = b >= sb && b < lo;
      r.predicted += predicted;
      const int c = where(b);
      if (c >= 0) {
        keep[c] = 1;
        stamps_[c] = len;
        if (predicted) {
          if (reuse) {
            ++r.hits;
          } else {
            ++r.fetched;  // fetched again into its slot
          }
        }
      } else {
        missing.push_back(b);
      }
    }
    // Free slots first (ascending), then the least recently wanted (stamp, slot).
    std::vector<int> order;
    for (size_t c = 0; c < tags_.size(); ++c)
      if (!keep[c] && tags_[c] < 0) order.push_back(static_cast<int>(c));
    std::vector<int> evictable;
    for (size_t c = 0; c < tags_.size(); ++c)
      if (!keep[c] && tags_[c] >= 0) evictable.push_back(static_cast<int>(c));
    std::stable_sort(evictable.begin(), evictable.end(),
                     [&](int x, int y) { return stamps_[x] < stamps_[y]; });
    order.insert(order.end(), evictable.begin(), evictable.end());
    size_t j = 0;
    for (size_t i = 0; i < order.size() && j < missing.size(); ++i) {
      const int c = order[i];
      const int32_t b = missing[j++];
      tags_[c] = b;
      stamps_[c] = len;
      if (b < full) {
        ++r.fetched;
      } else if (b == full && (len - 1) % kBlockTokens == 0) {
        ++r.allocated;
      } else {
        r.error = true;
      }
    }
    if (j < missing.size()) r.error = true;
    return r;
  }

  int where(int32_t block) const {
    for (size_t c = 0; c < tags_.size(); ++c)
      if (tags_[c] == block) return static_cast<int>(c);
    return -1;
  }
  const std::vector<int32_t>& tags() const { return tags_; }

 private:
  std::vector<int32_t> tags_;
  std::vector<int32_t> stamps_;
};

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_CACHE_PLAN_H_
