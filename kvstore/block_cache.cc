#include "kvstore/block_cache.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace apr::kvstore {

BlockCache::BlockCache(int32_t capacity) : slot_block_(capacity, -1), last_used_(capacity, 0) {}

int32_t BlockCache::TakeSlot(uint64_t protect_from) {
  // A free slot, else the least recently used one not selected at or after protect_from.
  int32_t best = -1;
  for (int32_t s = 0; s < capacity(); ++s) {
    if (slot_block_[s] < 0) return s;
    if (last_used_[s] >= protect_from) continue;
    if (best < 0 || last_used_[s] < last_used_[best]) best = s;
  }
  if (best >= 0) {
    where_.erase(slot_block_[best]);
    slot_block_[best] = -1;
    ++stats_.evictions;
  }
  return best;
}

absl::Status BlockCache::Plan(absl::Span<const int64_t> wanted, CachePlan* plan) {
  if (static_cast<int64_t>(wanted.size()) > capacity()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        wanted.size(), " blocks selected but the block cache has ", capacity(), " slots"));
  }
  const uint64_t now = ++tick_;
  plan->slot.assign(wanted.size(), -1);
  plan->fetch.clear();
  // Pass 1: hits are protected from eviction by this plan.
  for (size_t i = 0; i < wanted.size(); ++i) {
    auto it = where_.find(wanted[i]);
    if (it == where_.end()) continue;
    if (last_used_[it->second] == now) {
      return absl::InvalidArgumentError(absl::StrCat("block ", wanted[i], " is listed twice"));
    }
    last_used_[it->second] = now;
    plan->slot[i] = it->second;
  }
  // Pass 2: misses take free or least recently used slots.
  for (size_t i = 0; i < wanted.size(); ++i) {
    if (plan->slot[i] >= 0) continue;
    if (where_.contains(wanted[i])) {
      return absl::InvalidArgumentError(absl::StrCat("block ", wanted[i], " is listed twice"));
    }
    const int32_t s = TakeSlot(now);  // cannot fail: wanted.size() <= capacity
    slot_block_[s] = wanted[i];
    last_used_[s] = now;
    where_[wanted[i]] = s;
    plan->slot[i] = s;
    plan->fetch.push_back(static_cast<int32_t>(i));
  }
  ++stats_.plans;
  stats_.hits += static_cast<int64_t>(wanted.size() - plan->fetch.size());
  stats_.misses += static_cast<int64_t>(plan->fetch.size());
  return absl::OkStatus();
}

int32_t BlockCache::Insert(int64_t block) {
  if (auto it = where_.find(block); it != where_.end()) return it->second;
  const int32_t s = TakeSlot(tick_ + 1);  // anything may go
  slot_block_[s] = block;
  last_used_[s] = tick_;
  where_[block] = s;
  return s;
}

void BlockCache::Invalidate(int64_t block) {
  auto it = where_.find(block);
  if (it == where_.end()) return;
  slot_block_[it->second] = -1;
  last_used_[it->second] = 0;
  where_.erase(it);
}

void BlockCache::Clear() {
  where_.clear();
  std::fill(slot_block_.begin(), slot_block_.end(), -1);
  std::fill(last_used_.begin(), last_used_.end(), 0);
}

}  // namespace apr::kvstore
