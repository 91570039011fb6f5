#include "predictor/history.h"

#include <algorithm>
#include <cassert>
#include <cstring>

namespace apr::predictor {

void PoolGroupRow(const float* probs, int64_t head_stride, int64_t kv_head, int64_t group,
                  int64_t len, int64_t block, float* out) {
  const int64_t nb = (len + block - 1) / block;
  std::fill(out, out + nb, 0.0f);
  for (int64_t h = kv_head * group; h < (kv_head + 1) * group; ++h) {
    const float* p = probs + h * head_stride;
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t end = std::min(len, (b + 1) * block);
      float m = out[b];
      for (int64_t t = b * block; t < end; ++t) m = std::max(m, p[t]);
      out[b] = m;
    }
  }
}

void AttentionHistory::Reset(int64_t cols) {
  cols_ = cols;
  data_.assign(rows_ * cols_, 0.0f);
}

void AttentionHistory::Widen(int64_t cols) {
  if (cols <= cols_) return;
  std::vector<float> wider(rows_ * cols, 0.0f);
  for (int64_t r = 0; r < rows_; ++r)
    std::memcpy(&wider[r * cols], &data_[r * cols_], sizeof(float) * cols_);
  data_.swap(wider);
  cols_ = cols;
}

void AttentionHistory::Push(absl::Span<const float> row) {
  const int64_t n = static_cast<int64_t>(row.size());
  assert(n >= cols_);
  if (n > cols_) {
    // Shift and widen in one copy: kept rows 1..H-1 move up and gain a zero column.
    std::vector<float> next(rows_ * n, 0.0f);
    for (int64_t r = 1; r < rows_; ++r)
      std::memcpy(&next[(r - 1) * n], &data_[r * cols_], sizeof(float) * cols_);
    data_.swap(next);
    cols_ = n;
  } else {
    std::memmove(data_.data(), data_.data() + cols_, sizeof(float) * (rows_ - 1) * cols_);
  }
  std::memcpy(&data_[(rows_ - 1) * cols_], row.data(), sizeof(float) * cols_);
}

}  // namespace apr::predictor
