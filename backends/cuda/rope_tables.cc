#include "backends/cuda/rope_tables.h"

#include <vector>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/device_alloc.h"
#include "base/status_macros.h"
#include "runtime/rope.h"

namespace apr::cuda {

absl::Status RopeTables::Init(const ModelConfig& c, int fill_byte) {
  // Context 1 is within every original length: the short (or only) frequencies.
  const RopeParams first = RopeForContext(c, 1);
  std::vector<float> host = first.inv_freq;
  half_ = static_cast<int64_t>(host.size());
  attention_factor_ = first.attention_factor;
  long_after_ = 0;
  if (c.rope_scaling.type == RopeScaling::Type::kLongRope) {
    long_after_ = c.rope_scaling.original_max_position_embeddings;
    const RopeParams past = RopeForContext(c, long_after_ + 1);
    host.insert(host.end(), past.inv_freq.begin(), past.inv_freq.end());
  }
  APR_RETURN_IF_ERROR(Alloc(fill_byte, &inv_, static_cast<int64_t>(host.size())));
  APR_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(inv_.get(), host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice));
  return absl::OkStatus();
}

void RopeTables::ForDecode(RopeAppendArgs* ra) const {
  ra->inv_freq = inv_.get();
  ra->inv_freq_long = long_after_ > 0 ? inv_.get() + half_ : nullptr;
  ra->long_after = static_cast<int>(long_after_);
  ra->attention_factor = attention_factor_;
}

void RopeTables::ForPrefill(int64_t context_len, RopeAppendArgs* ra) const {
  const bool long_table = long_after_ > 0 && context_len > long_after_;
  ra->inv_freq = inv_.get() + (long_table ? half_ : 0);
  ra->inv_freq_long = nullptr;
  ra->long_after = 0;
  ra->attention_factor = attention_factor_;
}

}  // namespace apr::cuda
