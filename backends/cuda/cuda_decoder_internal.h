// Pieces of CudaDecoder shared by its source files: cuda_decoder.cc (setup, the layers'
// projections, settings, benchmark entry points), cuda_decoder_prefill.cc,
// cuda_decoder_step.cc (the decode step), cuda_decoder_offload.cc (the offload placements'
// cache and prefetch) and cuda_decoder_tier.cc (the tier side of a sequence). Not a public
// header.
#ifndef APRUNTIME_BACKENDS_CUDA_CUDA_DECODER_INTERNAL_H_
#define APRUNTIME_BACKENDS_CUDA_CUDA_DECODER_INTERNAL_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "backends/cuda/block_rules.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_decoder.h"
#include "backends/cuda/device_alloc.h"

namespace apr::cuda {

constexpr int kMaxSplits = 64;

inline int RoundUpPow2(int v) {
  int p = 16;
  while (p < v) p *= 2;
  return p;
}

class CudaDecoder::CudaSequence : public Sequence {
 public:
  CudaSequence(CudaDecoder* owner, int slot, AttentionHooks* hooks)
      : owner(owner), slot(slot), hooks(hooks) {}
  ~CudaSequence() override {
    if (slot >= 0) owner->Release(*this);
  }
  int64_t length() const override { return len; }

  CudaDecoder* owner;
  int slot;  // -1: no slot was free
  AttentionHooks* hooks;
  int64_t len = 0;
  std::vector<int32_t> groups;
  bool has_history = false;
  int hist_row = kHistoryRows - 1;  // the newest history row (of a kHistoryRing ring)
  int64_t steps = 0;                // decode steps since the history was initialised
  int32_t hist_count = 0;           // rows appended since then (the CNN state's clock)

  // Offload placements: the sequence in the tier.
  uint64_t tier_id = 0;
  bool in_tier = false;
  int tier_blocks = 0;  // blocks [0, tier_blocks) of every (layer, KV head) are in the tier
  // The prompt's blocks as prefilled so far (group b = block b): a prompt prefilled in
  // parts attends to the earlier parts' blocks here; freed by the first decode step.
  DeviceBuffer<__nv_bfloat16> staging;
  int staging_blocks = 0;
};

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_CUDA_DECODER_INTERNAL_H_
