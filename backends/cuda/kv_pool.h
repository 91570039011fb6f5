// Host-side bookkeeping of the resident KV pool: sequence slots and block groups.
//
// A *group* is room for one 16-token block of every (layer, KV head) of a sequence:
// layers * kv_heads consecutive slots of the GPU slot pool (docs/CUDA.md). A sequence's
// block b lives in group groups[b]; the device copy of that mapping is the group table,
// one row of max_blocks entries per sequence slot (rope_append.h SlotTable). Pure host
// code, tested on the CPU.
#ifndef APRUNTIME_BACKENDS_CUDA_KV_POOL_H_
#define APRUNTIME_BACKENDS_CUDA_KV_POOL_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace apr::cuda {

class KvPoolAllocator {
 public:
  KvPoolAllocator(int64_t num_groups, int max_sequences, int max_blocks_per_sequence);

  // A free sequence slot; ResourceExhausted when all are taken.
  absl::StatusOr<int> AcquireSequence();
  // Returns the slot and its groups to the free lists; `groups` is cleared.
  void ReleaseSequence(int slot, std::vector<int32_t>& groups);
  // Appends groups until `groups` holds `blocks`; OutOfRange past max_blocks_per_sequence,
  // ResourceExhausted when the pool is full (nothing is taken then).
  absl::Status Grow(std::vector<int32_t>& groups, int blocks);

  int64_t free_groups() const { return static_cast<int64_t>(free_groups_.size()); }
  int64_t num_groups() const { return num_groups_; }
  int max_sequences() const { return max_sequences_; }
  int max_blocks_per_sequence() const { return max_blocks_; }

 private:
  int64_t num_groups_;
  int max_sequences_, max_blocks_;
  std::vector<int32_t> free_groups_;  // a stack; lowest ids handed out first
  std::vector<int> free_slots_;
};

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_KV_POOL_H_
