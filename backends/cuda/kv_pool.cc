#include "backends/cuda/kv_pool.h"

#include "absl/strings/str_cat.h"

namespace apr::cuda {

KvPoolAllocator::KvPoolAllocator(int64_t num_groups, int max_sequences, int max_blocks)
    : num_groups_(num_groups), max_sequences_(max_sequences), max_blocks_(max_blocks) {
  free_groups_.reserve(num_groups);
  for (int64_t g = num_groups - 1; g >= 0; --g) free_groups_.push_back(static_cast<int32_t>(g));
  for (int s = max_sequences - 1; s >= 0; --s) free_slots_.push_back(s);
}

absl::StatusOr<int> KvPoolAllocator::AcquireSequence() {
  if (free_slots_.empty()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("all ", max_sequences_, " sequence slots are in use (max_sequences)"));
  }
  const int s = free_slots_.back();
  free_slots_.pop_back();
  return s;
}

void KvPoolAllocator::ReleaseSequence(int slot, std::vector<int32_t>& groups) {
  for (auto it = groups.rbegin(); it != groups.rend(); ++it) free_groups_.push_back(*it);
  groups.clear();
  free_slots_.push_back(slot);
}

absl::Status KvPoolAllocator::Grow(std::vector<int32_t>& groups, int blocks) {
  if (blocks <= static_cast<int>(groups.size())) return absl::OkStatus();
  if (blocks > max_blocks_) {
    return absl::OutOfRangeError(absl::StrCat("a sequence of ", blocks, " blocks exceeds the ",
                                              max_blocks_,
                                              " blocks (max_context / 16) per sequence"));
  }
  const int64_t need = blocks - static_cast<int64_t>(groups.size());
  if (need > free_groups()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the KV pool has ", free_groups(), " free block groups, ", need, " needed"));
  }
  for (int64_t i = 0; i < need; ++i) {
    groups.push_back(free_groups_.back());
    free_groups_.pop_back();
  }
  return absl::OkStatus();
}

}  // namespace apr::cuda
