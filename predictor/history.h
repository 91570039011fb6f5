// Attention history of one (sequence, layer, KV head): the last H rows of block max-pooled
// attention probabilities, oldest first (docs/PREDICTOR.md, "History").
#ifndef APRUNTIME_PREDICTOR_HISTORY_H_
#define APRUNTIME_PREDICTOR_HISTORY_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "runtime/algorithm_constants.h"

namespace apr::predictor {

// out[b] = max over the group's query heads h in [kv_head * group, (kv_head + 1) * group)
// and tokens t in block b of probs[h * head_stride + t], for b < ceil(len / block).
// A partial last block pools over the tokens it has (the official code pads with zeros;
// probabilities are >= 0, so the result is the same).
void PoolGroupRow(const float* probs, int64_t head_stride, int64_t kv_head, int64_t group,
                  int64_t len, int64_t block, float* out);

class AttentionHistory {
 public:
  explicit AttentionHistory(int64_t rows = kHistoryRows) : rows_(rows) {}

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  // [rows][cols], row-major, oldest row first.
  const float* data() const { return data_.data(); }
  float at(int64_t r, int64_t c) const { return data_[r * cols_ + c]; }

  // All rows zero, `cols` blocks wide.
  void Reset(int64_t cols);
  // Drops the oldest row and appends `row`. row.size() must be >= cols(); when it is
  // wider (the context gained a block: one column per decode step at most) every kept
  // row gets zero columns first (the official update order: shift, pad, append).
  void Push(absl::Span<const float> row);
  // Widens every row with zero columns up to `cols` (no-op if already as wide).
  void Widen(int64_t cols);

 private:
  int64_t rows_;
  int64_t cols_ = 0;
  std::vector<float> data_;
};

}  // namespace apr::predictor

#endif  // APRUNTIME_PREDICTOR_HISTORY_H_
