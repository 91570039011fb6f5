#include "kvstore/client/local_tier.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace apr::kvstore {

std::string LocalTier::description() const {
  return absl::StrCat("local pool (", store_->capacity_blocks(), " blocks of ",
                      store_->block_bytes(), " bytes)");
}

absl::Status LocalTier::CreateSequence(uint64_t seq, int32_t num_layers, int32_t num_kv_heads) {
  return store_->CreateSequence(seq, num_layers, num_kv_heads);
}

absl::StatusOr<int64_t> LocalTier::FreeSequence(uint64_t seq) { return store_->FreeSequence(seq); }

absl::StatusOr<std::vector<uint32_t>> LocalTier::WriteBlocks(
    uint64_t seq, absl::Span<const BlockKey> keys, absl::Span<const std::byte* const> data) {
  if (keys.size() != data.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(keys.size(), " blocks but ", data.size(), " data pointers"));
  }
  auto slots = store_->AllocateBlocks(seq, keys);
  if (!slots.ok()) return slots.status();
  const int64_t bb = store_->block_bytes();
  for (size_t i = 0; i < keys.size(); ++i) std::memcpy(store_->slot_data((*slots)[i]), data[i], bb);
  absl::MutexLock lock(&mu_);
  stats_.blocks_written += static_cast<int64_t>(keys.size());
  stats_.bytes_written += static_cast<int64_t>(keys.size()) * bb;
  return slots;
}

absl::StatusOr<std::vector<uint32_t>> LocalTier::LookupSlots(uint64_t seq,
                                                             absl::Span<const BlockKey> keys) {
  return store_->LookupSlots(seq, keys);
}

absl::StatusOr<ReadId> LocalTier::StartRead(absl::Span<const uint32_t> slots,
                                            absl::Span<std::byte* const> dst) {
  if (slots.size() != dst.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(slots.size(), " slots but ", dst.size(), " destinations"));
  }
  const int64_t bb = store_->block_bytes();
  for (uint32_t s : slots) {
    if (s >= store_->capacity_blocks()) {
      return absl::OutOfRangeError(absl::StrCat("slot ", s, " is beyond the local pool's ",
                                                store_->capacity_blocks(), " blocks"));
    }
  }
  for (size_t i = 0; i < slots.size(); ++i) std::memcpy(dst[i], store_->slot_data(slots[i]), bb);
  absl::MutexLock lock(&mu_);
  ++stats_.reads;
  stats_.blocks_read += static_cast<int64_t>(slots.size());
  stats_.bytes_read += static_cast<int64_t>(slots.size()) * bb;
  stats_.data_ops += static_cast<int64_t>(slots.size());
  return next_id_++;
}

absl::Status LocalTier::WaitRead(ReadId) {
  absl::MutexLock lock(&mu_);
  ++stats_.waits;
  return absl::OkStatus();
}

TierClientStats LocalTier::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace apr::kvstore
