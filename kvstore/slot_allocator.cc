#include "kvstore/slot_allocator.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace apr::kvstore {

SlotAllocator::SlotAllocator(uint32_t capacity, std::string what)
    : capacity_(capacity), what_(std::move(what)), in_use_(capacity, false) {
  free_.reserve(capacity);
  // Lowest slots on top of the stack: a fresh pool hands out 0, 1, 2, ... in order, so the
  // blocks of one prefill are contiguous and remote reads can be coalesced.
  for (uint32_t s = capacity; s > 0; --s) free_.push_back(s - 1);
}

absl::StatusOr<std::vector<uint32_t>> SlotAllocator::Allocate(int64_t n) {
  if (n < 0) return absl::InvalidArgumentError(absl::StrCat("cannot allocate ", n, " slots"));
  if (n > static_cast<int64_t>(free_.size())) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what_, " is full: ", n, " blocks requested, ", free_.size(),
                     " of its capacity of ", capacity_, " blocks are free (", used(), " in use)"));
  }
  std::vector<uint32_t> out(free_.end() - n, free_.end());
  std::reverse(out.begin(), out.end());
  free_.resize(free_.size() - n);
  for (uint32_t s : out) in_use_[s] = true;
  return out;
}

absl::Status SlotAllocator::Free(absl::Span<const uint32_t> slots) {
  for (size_t i = 0; i < slots.size(); ++i) {
    const uint32_t s = slots[i];
    if (s >= capacity_ || !in_use_[s]) {
      // Undo the marks made so far so that nothing is freed.
      for (size_t j = 0; j < i; ++j) in_use_[slots[j]] = true;
      return absl::FailedPreconditionError(absl::StrCat(
          what_, ": cannot free slot ", s,
          s >= capacity_ ? ": beyond the capacity" : ": not allocated (or listed twice)",
          " (capacity ", capacity_, " blocks)"));
    }
    in_use_[s] = false;  // a slot listed twice fails on its second appearance
  }
  // Push in reverse so that the first slot freed is handed out first again.
  for (size_t i = slots.size(); i > 0; --i) free_.push_back(slots[i - 1]);
  return absl::OkStatus();
}

}  // namespace apr::kvstore
