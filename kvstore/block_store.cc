#include "kvstore/block_store.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace apr::kvstore {
namespace {

std::string KeyName(uint64_t seq, const BlockKey& k) {
  return absl::StrCat("sequence ", seq, " layer ", k.layer, " KV head ", k.kv_head, " block ",
                      k.block);
}

}  // namespace

absl::StatusOr<std::unique_ptr<BlockStore>> BlockStore::Create(const BlockStoreOptions& o) {
  if (o.block_bytes <= 0 || o.block_bytes % 16 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("block_bytes must be a positive multiple of 16, got ", o.block_bytes));
  }
  if (o.capacity_blocks <= 0 || o.capacity_blocks > int64_t{std::numeric_limits<uint32_t>::max()}) {
    return absl::InvalidArgumentError(
        absl::StrCat("capacity_blocks must be in [1, 2^32 - 1], got ", o.capacity_blocks));
  }
  const int64_t bytes = o.block_bytes * o.capacity_blocks;
  auto region = HostRegion::Allocate(static_cast<size_t>(bytes), o.populate);
  if (!region.ok()) {
    return absl::ResourceExhaustedError(absl::StrCat("block pool of ", o.capacity_blocks,
                                                     " blocks x ", o.block_bytes,
                                                     " bytes: ", region.status().message()));
  }
  return std::unique_ptr<BlockStore>(
      new BlockStore(*std::move(region), o.block_bytes, o.capacity_blocks));
}

BlockStore::BlockStore(HostRegion region, int64_t block_bytes, int64_t capacity_blocks)
    : region_(std::move(region)),
      block_bytes_(block_bytes),
      capacity_blocks_(capacity_blocks),
      slots_(static_cast<uint32_t>(capacity_blocks),
             absl::StrCat("block pool (", capacity_blocks, " blocks of ", block_bytes, " bytes)")) {
}

absl::Status BlockStore::CreateSequence(uint64_t seq, int32_t num_layers, int32_t num_kv_heads) {
  if (num_layers <= 0 || num_kv_heads <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("sequence ", seq, ": num_layers (", num_layers,
                                                   ") and num_kv_heads (", num_kv_heads,
                                                   ") must be positive"));
  }
  absl::MutexLock lock(&mu_);
  if (sequences_.contains(seq)) {
    return absl::AlreadyExistsError(absl::StrCat("sequence ", seq, " already exists"));
  }
  Sequence& s = sequences_[seq];
  s.num_layers = num_layers;
  s.num_kv_heads = num_kv_heads;
  s.tables.resize(int64_t{num_layers} * num_kv_heads);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> BlockStore::FreeSequence(uint64_t seq) {
  absl::MutexLock lock(&mu_);
  auto it = sequences_.find(seq);
  if (it == sequences_.end()) return absl::NotFoundError(absl::StrCat("no sequence ", seq));
  std::vector<uint32_t> all;
  all.reserve(it->second.blocks);
  for (const std::vector<uint32_t>& t : it->second.tables)
    all.insert(all.end(), t.begin(), t.end());
  // Ascending: the allocator hands the lowest freed slot out first, so a sequence allocated
  // after this one gets its slots in the order a fresh pool would give them (its prefill's
  // blocks contiguous again, and benchmark rows see the same slots as the first).
  std::sort(all.begin(), all.end());
  APR_RETURN_IF_ERROR(slots_.Free(all));  // all or nothing
  const int64_t freed = static_cast<int64_t>(all.size());
  counters_.blocks_freed_total += freed;
  sequences_.erase(it);
  return freed;
}

absl::StatusOr<const BlockStore::Sequence*> BlockStore::FindLocked(uint64_t seq) const {
  auto it = sequences_.find(seq);
  if (it == sequences_.end()) return absl::NotFoundError(absl::StrCat("no sequence ", seq));
  return &it->second;
}

absl::StatusOr<std::vector<uint32_t>> BlockStore::AllocateBlocks(uint64_t seq,
                                                                 absl::Span<const BlockKey> keys) {
  absl::MutexLock lock(&mu_);
  auto it = sequences_.find(seq);
  if (it == sequences_.end()) return absl::NotFoundError(absl::StrCat("no sequence ", seq));
  Sequence& s = it->second;
  // Pass 1: validate and count new blocks, tracking how each table would grow.
  absl::flat_hash_map<int64_t, int64_t> grown;  // table index -> length after earlier keys
  int64_t new_blocks = 0;
  for (const BlockKey& k : keys) {
    if (k.layer < 0 || k.layer >= s.num_layers || k.kv_head < 0 || k.kv_head >= s.num_kv_heads) {
      return absl::InvalidArgumentError(absl::StrCat(KeyName(seq, k), ": the sequence has ",
                                                     s.num_layers, " layers and ", s.num_kv_heads,
                                                     " KV heads"));
    }
    const int64_t t = int64_t{k.layer} * s.num_kv_heads + k.kv_head;
    auto [g, inserted] = grown.try_emplace(t, static_cast<int64_t>(s.tables[t].size()));
    if (k.block < 0 || k.block > g->second) {
      return absl::InvalidArgumentError(
          absl::StrCat(KeyName(seq, k), ": blocks are appended in order and the table has ",
                       g->second, " blocks"));
    }
    if (k.block == g->second) {
      ++g->second;
      ++new_blocks;
    }
  }
  auto fresh = slots_.Allocate(new_blocks);
  if (!fresh.ok()) {
    ++counters_.allocation_failures;
    return fresh.status();
  }
  counters_.blocks_allocated_total += new_blocks;
  s.blocks += new_blocks;
  // Pass 2: append the new slots and collect every key's slot.
  std::vector<uint32_t> out;
  out.reserve(keys.size());
  size_t next = 0;
  for (const BlockKey& k : keys) {
    std::vector<uint32_t>& table = s.tables[int64_t{k.layer} * s.num_kv_heads + k.kv_head];
    if (k.block == static_cast<int64_t>(table.size())) table.push_back((*fresh)[next++]);
    out.push_back(table[k.block]);
  }
  return out;
}

absl::StatusOr<std::vector<uint32_t>> BlockStore::WriteBlocks(uint64_t seq,
                                                              absl::Span<const BlockKey> keys,
                                                              std::string_view data) {
  if (static_cast<int64_t>(data.size()) != static_cast<int64_t>(keys.size()) * block_bytes_) {
    return absl::InvalidArgumentError(absl::StrCat("sequence ", seq, ": ", data.size(),
                                                   " bytes of data for ", keys.size(),
                                                   " blocks of ", block_bytes_, " bytes"));
  }
  auto slots = AllocateBlocks(seq, keys);
  if (!slots.ok()) return slots.status();
  for (size_t i = 0; i < slots->size(); ++i) {
    std::memcpy(slot_data((*slots)[i]), data.data() + i * block_bytes_, block_bytes_);
  }
  absl::MutexLock lock(&mu_);
  counters_.blocks_written_inline += static_cast<int64_t>(keys.size());
  return slots;
}

absl::StatusOr<std::vector<uint32_t>> BlockStore::LookupLocked(
    uint64_t seq, absl::Span<const BlockKey> keys) const {
  auto s = FindLocked(seq);
  if (!s.ok()) return s.status();
  const Sequence& q = **s;
  std::vector<uint32_t> out;
  out.reserve(keys.size());
  for (const BlockKey& k : keys) {
    if (k.layer < 0 || k.layer >= q.num_layers || k.kv_head < 0 || k.kv_head >= q.num_kv_heads) {
      return absl::InvalidArgumentError(absl::StrCat(KeyName(seq, k), ": the sequence has ",
                                                     q.num_layers, " layers and ", q.num_kv_heads,
                                                     " KV heads"));
    }
    const std::vector<uint32_t>& t = q.tables[int64_t{k.layer} * q.num_kv_heads + k.kv_head];
    if (k.block < 0 || k.block >= static_cast<int64_t>(t.size())) {
      return absl::NotFoundError(
          absl::StrCat(KeyName(seq, k), " is not stored (the table has ", t.size(), " blocks)"));
    }
    out.push_back(t[k.block]);
  }
  counters_.slots_looked_up += static_cast<int64_t>(out.size());
  return out;
}

absl::StatusOr<std::vector<uint32_t>> BlockStore::LookupSlots(
    uint64_t seq, absl::Span<const BlockKey> keys) const {
  absl::MutexLock lock(&mu_);
  return LookupLocked(seq, keys);
}

absl::StatusOr<std::vector<uint32_t>> BlockStore::BlockTable(uint64_t seq, int32_t layer,
                                                             int32_t kv_head) const {
  absl::MutexLock lock(&mu_);
  auto s = FindLocked(seq);
  if (!s.ok()) return s.status();
  const Sequence& q = **s;
  if (layer < 0 || layer >= q.num_layers || kv_head < 0 || kv_head >= q.num_kv_heads) {
    return absl::InvalidArgumentError(absl::StrCat("sequence ", seq, " layer ", layer, " KV head ",
                                                   kv_head, ": the sequence has ", q.num_layers,
                                                   " layers and ", q.num_kv_heads, " KV heads"));
  }
  std::vector<uint32_t> t = q.tables[int64_t{layer} * q.num_kv_heads + kv_head];
  counters_.slots_looked_up += static_cast<int64_t>(t.size());
  return t;
}

absl::StatusOr<std::string> BlockStore::ReadBlocks(uint64_t seq,
                                                   absl::Span<const BlockKey> keys) const {
  std::vector<uint32_t> slots;
  {
    absl::MutexLock lock(&mu_);
    auto s = LookupLocked(seq, keys);
    if (!s.ok()) return s.status();
    slots = *std::move(s);
    counters_.blocks_read_inline += static_cast<int64_t>(slots.size());
  }
  std::string out(slots.size() * block_bytes_, '\0');
  for (size_t i = 0; i < slots.size(); ++i) {
    std::memcpy(out.data() + i * block_bytes_, slot_data(slots[i]), block_bytes_);
  }
  return out;
}

BlockStoreStats BlockStore::stats() const {
  absl::MutexLock lock(&mu_);
  BlockStoreStats s = counters_;
  s.block_bytes = block_bytes_;
  s.capacity_blocks = capacity_blocks_;
  s.used_blocks = slots_.used();
  s.free_blocks = slots_.available();
  s.sequences = static_cast<int64_t>(sequences_.size());
  return s;
}

}  // namespace apr::kvstore
