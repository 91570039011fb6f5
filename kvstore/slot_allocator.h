// Slots of a fixed-capacity pool: which are free, which are in use.
#ifndef APRUNTIME_KVSTORE_SLOT_ALLOCATOR_H_
#define APRUNTIME_KVSTORE_SLOT_ALLOCATOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace apr::kvstore {

// Not thread-safe; BlockStore serialises access. Slot indices are dense in [0, capacity).
// Freed slots are reused last-in first-out, so a pool that is filled and emptied keeps
// touching the same pages.
class SlotAllocator {
 public:
  // `what` names the pool in error messages ("storage node pool").
  SlotAllocator(uint32_t capacity, std::string what);

  // `n` slots, all or none: ResourceExhausted naming the capacity and what is in use when
  // fewer than `n` are free.
  absl::StatusOr<std::vector<uint32_t>> Allocate(int64_t n);
  // Returns slots to the pool. FailedPrecondition (and nothing freed) when a slot is out of
  // range, not allocated, or listed twice: that is a bookkeeping bug in the caller.
  absl::Status Free(absl::Span<const uint32_t> slots);

  uint32_t capacity() const { return capacity_; }
  uint32_t used() const { return capacity_ - static_cast<uint32_t>(free_.size()); }
  uint32_t available() const { return static_cast<uint32_t>(free_.size()); }
  bool allocated(uint32_t slot) const { return slot < capacity_ && in_use_[slot]; }

 private:
  uint32_t capacity_;
  std::string what_;
  std::vector<uint32_t> free_;  // a stack; the back is handed out next
  std::vector<bool> in_use_;
};

}  // namespace apr::kvstore

#endif  // APRUNTIME_KVSTORE_SLOT_ALLOCATOR_H_
