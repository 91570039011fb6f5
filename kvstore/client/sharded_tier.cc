#include "kvstore/client/sharded_tier.h"

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"

namespace apr::kvstore {
namespace {

// The first error of `statuses`, or OK.
absl::Status FirstError(const std::vector<absl::Status>& statuses) {
  for (const absl::Status& s : statuses) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

// How long WaitRead progresses every shard in turn before it waits for them one by one.
// Longer only when a node is slow or gone, which each shard's own bounded wait reports.
constexpr absl::Duration kTogether = absl::Seconds(1);

}  // namespace

absl::StatusOr<std::unique_ptr<ShardedTier>> ShardedTier::Create(
    std::vector<std::shared_ptr<StagingTier>> shards) {
  if (shards.empty() || static_cast<int>(shards.size()) > kMaxShards) {
    return absl::InvalidArgumentError(absl::StrCat("a sharded KV tier needs 1 to ", kMaxShards,
                                                   " storage nodes, not ", shards.size()));
  }
  const int64_t bb = shards[0]->block_bytes();
  for (size_t i = 0; i < shards.size(); ++i) {
    if (shards[i]->block_bytes() != bb) {
      return absl::InvalidArgumentError(
          absl::StrCat("the storage nodes of one sharded tier must have the same block size: ",
                       shards[0]->description(), " has ", bb, "-byte blocks, ",
                       shards[i]->description(), " has ", shards[i]->block_bytes()));
    }
    auto st = shards[i]->NodeStats();
    if (!st.ok()) return st.status();
    if (st->capacity_blocks > kMaxShardCapacity) {
      return absl::InvalidArgumentError(
          absl::StrCat(shards[i]->description(), " has ", st->capacity_blocks,
                       " blocks; a node of a sharded tier may have at most ", kMaxShardCapacity,
                       " (its slots carry the node in their top ", kShardBits, " bits)"));
    }
  }
  return std::unique_ptr<ShardedTier>(new ShardedTier(std::move(shards), bb));
}

std::string ShardedTier::description() const {
  std::string out = absl::StrCat(num_shards(), " storage nodes sharded by KV head: ");
  for (int i = 0; i < num_shards(); ++i) {
    absl::StrAppend(&out, i == 0 ? "" : "; ", shards_[i]->description());
  }
  return out;
}

absl::Status ShardedTier::ShardError(int shard, const absl::Status& s) const {
  return absl::Status(s.code(), absl::StrCat("KV shard ", shard, " of ", num_shards(), " (",
                                             shards_[shard]->description(), "): ", s.message()));
}

std::vector<int> ShardedTier::AllShards() const {
  std::vector<int> all(shards_.size());
  for (int i = 0; i < num_shards(); ++i) all[i] = i;
  return all;
}

std::vector<absl::Status> ShardedTier::OnShards(const std::vector<int>& which,
                                                const std::function<absl::Status(int)>& fn) const {
  std::vector<absl::Status> out(which.size());
  std::vector<std::thread> threads;
  // The first shard on this thread, the others beside it: one round trip, not N.
  for (size_t k = 1; k < which.size(); ++k) {
    threads.emplace_back([&, k] { out[k] = fn(which[k]); });
  }
  if (!which.empty()) out[0] = fn(which[0]);
  for (std::thread& t : threads) t.join();
  for (size_t k = 0; k < which.size(); ++k) {
    if (!out[k].ok()) out[k] = ShardError(which[k], out[k]);
  }
  return out;
}

ShardedTier::Split ShardedTier::SplitKeys(absl::Span<const BlockKey> keys) const {
  Split s;
  s.keys.resize(shards_.size());
  s.index.resize(shards_.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    const int shard = ShardOf(keys[i].kv_head);
    s.keys[shard].push_back(keys[i]);
    s.index[shard].push_back(i);
  }
  return s;
}

absl::Status ShardedTier::CreateSequence(uint64_t seq, int32_t num_layers, int32_t num_kv_heads) {
  if (num_kv_heads < num_shards()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a sequence of ", num_kv_heads, " KV heads cannot be sharded by KV head over ",
        num_shards(), " storage nodes: ", num_shards() - num_kv_heads, " would hold nothing"));
  }
  const std::vector<absl::Status> st = OnShards(AllShards(), [&](int i) {
    return shards_[i]->CreateSequence(seq, num_layers, num_kv_heads);
  });
  if (absl::Status e = FirstError(st); !e.ok()) {
    std::vector<int> made;
    for (int i = 0; i < num_shards(); ++i) {
      if (st[i].ok()) made.push_back(i);
    }
    OnShards(made, [&](int i) { return shards_[i]->FreeSequence(seq).status(); });
    return e;
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ShardedTier::FreeSequence(uint64_t seq) {
  std::vector<int64_t> freed(shards_.size(), 0);
  const std::vector<absl::Status> st = OnShards(AllShards(), [&](int i) {
    APR_ASSIGN_OR_RETURN(freed[i], shards_[i]->FreeSequence(seq));
    return absl::OkStatus();
  });
  APR_RETURN_IF_ERROR(FirstError(st));
  int64_t total = 0;
  for (int64_t n : freed) total += n;
  return total;
}

absl::StatusOr<std::vector<uint32_t>> ShardedTier::SlotsByShard(
    absl::Span<const BlockKey> keys,
    const std::function<absl::StatusOr<std::vector<uint32_t>>(int, const Split&)>& per_shard) {
  const Split split = SplitKeys(keys);
  std::vector<int> which;
  for (int i = 0; i < num_shards(); ++i) {
    if (!split.keys[i].empty()) which.push_back(i);
  }
  std::vector<uint32_t> out(keys.size());
  const std::vector<absl::Status> st = OnShards(which, [&](int i) {
    APR_ASSIGN_OR_RETURN(std::vector<uint32_t> slots, per_shard(i, split));
    if (slots.size() != split.keys[i].size()) {
      return absl::InternalError(
          absl::StrCat(slots.size(), " slots for ", split.keys[i].size(), " blocks"));
    }
    for (size_t k = 0; k < slots.size(); ++k) {
      if (slots[k] > kMaxShardCapacity) {
        return absl::OutOfRangeError(
            absl::StrCat("slot ", slots[k], " needs more than ", kSlotBits, " bits"));
      }
      out[split.index[i][k]] = Encode(i, slots[k]);
    }
    return absl::OkStatus();
  });
  APR_RETURN_IF_ERROR(FirstError(st));
  return out;
}

absl::StatusOr<std::vector<uint32_t>> ShardedTier::WriteBlocks(
    uint64_t seq, absl::Span<const BlockKey> keys, absl::Span<const std::byte* const> data) {
  if (keys.size() != data.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(keys.size(), " blocks but ", data.size(), " data pointers"));
  }
  return SlotsByShard(keys, [&](int i, const Split& split) {
    std::vector<const std::byte*> ptrs;
    ptrs.reserve(split.index[i].size());
    for (size_t k : split.index[i]) ptrs.push_back(data[k]);
    return shards_[i]->WriteBlocks(seq, split.keys[i], ptrs);
  });
}

absl::StatusOr<std::vector<uint32_t>> ShardedTier::LookupSlots(uint64_t seq,
                                                               absl::Span<const BlockKey> keys) {
  return SlotsByShard(
      keys, [&](int i, const Split& split) { return shards_[i]->LookupSlots(seq, split.keys[i]); });
}

absl::StatusOr<std::vector<uint32_t>> ShardedTier::AllocateBlocks(uint64_t seq,
                                                                  absl::Span<const BlockKey> keys) {
  return SlotsByShard(keys, [&](int i, const Split& split) {
    return shards_[i]->AllocateBlocks(seq, split.keys[i]);
  });
}

absl::StatusOr<ReadId> ShardedTier::StartRead(absl::Span<const uint32_t> slots,
                                              absl::Span<std::byte* const> dst) {
  if (slots.size() != dst.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(slots.size(), " slots but ", dst.size(), " destinations"));
  }
  std::vector<std::vector<uint32_t>> shard_slots(shards_.size());
  std::vector<std::vector<std::byte*>> shard_dst(shards_.size());
  for (size_t i = 0; i < slots.size(); ++i) {
    const int shard = SlotShard(slots[i]);
    if (shard >= num_shards()) {
      return absl::OutOfRangeError(absl::StrCat("slot ", slots[i], " names KV shard ", shard,
                                                "; this tier has ", num_shards()));
    }
    shard_slots[shard].push_back(ShardSlot(slots[i]));
    shard_dst[shard].push_back(dst[i]);
  }
  // Every shard's gets are issued before any is waited for: the nodes serve in parallel.
  ShardReads reads;
  for (int i = 0; i < num_shards(); ++i) {
    if (shard_slots[i].empty()) continue;
    auto id = shards_[i]->StartRead(shard_slots[i], shard_dst[i]);
    if (!id.ok()) {
      WaitShards(reads).IgnoreError();  // the started ones must finish before dst goes
      return ShardError(i, id.status());
    }
    reads.emplace_back(i, *id);
  }
  absl::MutexLock lock(&mu_);
  ++own_.reads;
  const ReadId id = next_id_++;
  reads_.emplace(id, std::move(reads));
  return id;
}

bool ShardedTier::ReadDone(ReadId id) {
  ShardReads reads;
  {
    absl::MutexLock lock(&mu_);
    auto it = reads_.find(id);
    if (it == reads_.end()) return true;
    reads = it->second;
  }
  bool done = true;
  for (const auto& [shard, shard_id] : reads) done = shards_[shard]->ReadDone(shard_id) && done;
  return done;
}

absl::Status ShardedTier::WaitShards(const ShardReads& reads) {
  // Progress them all in turn first: a shard's transfer may move only while its client
  // is progressed, so waiting for one at a time would serialise the nodes.
  const absl::Time until = absl::Now() + kTogether;
  for (size_t left = reads.size(); left > 1 && absl::Now() < until;) {
    left = 0;
    for (const auto& [shard, shard_id] : reads) left += shards_[shard]->ReadDone(shard_id) ? 0 : 1;
  }
  absl::Status first;
  for (const auto& [shard, shard_id] : reads) {
    absl::Status s = shards_[shard]->WaitRead(shard_id);
    if (!s.ok() && first.ok()) first = ShardError(shard, s);
  }
  return first;
}

absl::Status ShardedTier::WaitRead(ReadId id) {
  ShardReads reads;
  {
    absl::MutexLock lock(&mu_);
    auto it = reads_.find(id);
    if (it == reads_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("no read ", id, " in flight"));
    }
    reads = std::move(it->second);
    reads_.erase(it);
  }
  bool blocked = false;
  for (const auto& [shard, shard_id] : reads) blocked |= !shards_[shard]->ReadDone(shard_id);
  const absl::Time start = absl::Now();
  absl::Status s = WaitShards(reads);
  absl::MutexLock lock(&mu_);
  ++own_.waits;
  if (blocked) ++own_.waits_blocked;
  own_.wait_seconds += absl::ToDoubleSeconds(absl::Now() - start);
  return s;
}

absl::StatusOr<BlockStoreStats> ShardedTier::NodeStats() {
  std::vector<BlockStoreStats> each(shards_.size());
  const std::vector<absl::Status> st = OnShards(AllShards(), [&](int i) {
    APR_ASSIGN_OR_RETURN(each[i], shards_[i]->NodeStats());
    return absl::OkStatus();
  });
  APR_RETURN_IF_ERROR(FirstError(st));
  BlockStoreStats sum;
  sum.block_bytes = block_bytes_;
  for (const BlockStoreStats& s : each) {
    sum.capacity_blocks += s.capacity_blocks;
    sum.used_blocks += s.used_blocks;
    sum.free_blocks += s.free_blocks;
    sum.sequences = std::max(sum.sequences, s.sequences);
    sum.blocks_allocated_total += s.blocks_allocated_total;
    sum.blocks_freed_total += s.blocks_freed_total;
    sum.allocation_failures += s.allocation_failures;
    sum.blocks_written_inline += s.blocks_written_inline;
    sum.blocks_read_inline += s.blocks_read_inline;
    sum.slots_looked_up += s.slots_looked_up;
  }
  return sum;
}

TierClientStats ShardedTier::stats() const {
  TierClientStats sum;
  {
    absl::MutexLock lock(&mu_);
    sum = own_;  // reads and waits, which this tier counts; its nodes count the traffic
  }
  for (const auto& shard : shards_) AddTraffic(shard->stats(), &sum);
  return sum;
}

std::vector<NodeTraffic> ShardedTier::node_traffic() const { return NodeTrafficOf(shards_); }

absl::Status ShardedTier::RegisterStaging(void* address, size_t length) {
  for (int i = 0; i < num_shards(); ++i) {
    if (absl::Status s = shards_[i]->RegisterStaging(address, length); !s.ok()) {
      for (int k = 0; k < i; ++k) shards_[k]->UnregisterStaging(address);
      return ShardError(i, s);
    }
  }
  return absl::OkStatus();
}

void ShardedTier::UnregisterStaging(void* address) {
  for (const auto& shard : shards_) shard->UnregisterStaging(address);
}

}  // namespace apr::kvstore
