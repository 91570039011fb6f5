// Compact per-block key summaries of one (layer, KV head): the per-channel minimum,
// maximum and mean of each complete block's keys. Quest scores blocks with the min/max
// bound; the approximate calibration sources use either. On a GPU these summaries are
// 3 x head_dim floats per block (at most 1/16 + 2/16 of the key cache at block 16) and
// can stay resident while the blocks themselves live in the storage tier.
#ifndef APRUNTIME_PREDICTOR_KEY_SUMMARY_H_
#define APRUNTIME_PREDICTOR_KEY_SUMMARY_H_

#include <cstdint>
#include <vector>

namespace apr::predictor {

class BlockKeySummary {
 public:
  BlockKeySummary() = default;
  BlockKeySummary(int64_t block, int64_t head_dim) : block_(block), head_dim_(head_dim) {}

  // Summarises every complete block of keys[0, len) ([len][head_dim], RoPE applied) not yet
  // summarised. Keys of complete blocks never change, so each block is read once.
  void Update(const float* keys, int64_t len);
  void Clear() { min_.clear(), max_.clear(), mean_.clear(), blocks_ = 0; }

  int64_t blocks() const { return blocks_; }
  const float* min(int64_t b) const { return &min_[b * head_dim_]; }
  const float* max(int64_t b) const { return &max_[b * head_dim_]; }
  const float* mean(int64_t b) const { return &mean_[b * head_dim_]; }

  // Quest's upper bound on q . k over the block: sum_j max(q_j min_j, q_j max_j).
  float UpperBound(int64_t b, const float* q) const;
  // q . mean key of the block (the mean of q . k over its tokens).
  float MeanDot(int64_t b, const float* q) const;
  // The CUDA offload path's estimate of the block's largest q . k from min/max alone
  // (backends/cuda/offload_kernels.h, kCenterL2): q . c + sqrt(sum_j (q_j r_j)^2) with
  // centre c = (min + max) / 2 and half-range r = (max - min) / 2.
  float CenterL2(int64_t b, const float* q) const;

 private:
  int64_t block_ = 16, head_dim_ = 0, blocks_ = 0;
  std::vector<float> min_, max_, mean_;
};

}  // namespace apr::predictor

#endif  // APRUNTIME_PREDICTOR_KEY_SUMMARY_H_
