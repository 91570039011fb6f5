#include "kvstore/client/replicated_tier.h"

#include <algorithm>
#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"

namespace apr::kvstore {
namespace {

// A replica's node is gone (RemoteTier's dead-node errors; ShardedTier keeps the code).
bool IsLoss(const absl::Status& s) { return s.code() == absl::StatusCode::kUnavailable; }

}  // namespace

absl::StatusOr<std::unique_ptr<ReplicatedTier>> ReplicatedTier::Create(
    std::shared_ptr<StagingTier> primary, std::shared_ptr<StagingTier> secondary) {
  if (primary == nullptr || secondary == nullptr) {
    return absl::InvalidArgumentError("a replicated KV tier needs two replicas");
  }
  if (primary->block_bytes() != secondary->block_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the replicas of one KV tier must have the same block size: ", primary->description(),
        " has ", primary->block_bytes(), "-byte blocks, ", secondary->description(), " has ",
        secondary->block_bytes()));
  }
  const int64_t bb = primary->block_bytes();
  return std::unique_ptr<ReplicatedTier>(
      new ReplicatedTier(std::move(primary), std::move(secondary), bb));
}

std::string ReplicatedTier::description() const {
  absl::ReaderMutexLock ops(&ops_mu_);
  return absl::StrCat("2 KV replicas: ", replicas_[0]->description(), "; ",
                      replicas_[1]->description());
}

bool ReplicatedTier::lost(int r) const {
  absl::MutexLock lock(&mu_);
  return !lost_[r].empty();
}

void ReplicatedTier::MarkLost(int r, const absl::Status& why) {
  absl::ReaderMutexLock ops(&ops_mu_);
  MarkLostHeld(r, why);
}

void ReplicatedTier::MarkReadLost(const Pending& read, const absl::Status& why) {
  if (replicas_[read.replica] == read.tier) MarkLostHeld(read.replica, why);
}

void ReplicatedTier::MarkLostHeld(int r, const absl::Status& why) {
  {
    absl::MutexLock lock(&mu_);
    if (!lost_[r].empty()) return;
    lost_[r] = why.ok() ? std::string("lost") : std::string(why.message());
  }
  // Once per replica: later calls do not reach it, so this is the loss's one log line.
  std::fprintf(stderr, "kvstore: KV replica %d of 2 (%s) is lost: %s; %s\n", r,
               replicas_[r]->description().c_str(), std::string(why.message()).c_str(),
               lost(1 - r) ? "the other replica is lost too"
                           : absl::StrCat("serving from replica ", 1 - r, " (",
                                          replicas_[1 - r]->description(), ") only")
                                 .c_str());
}

std::vector<int> ReplicatedTier::Live() const {
  absl::MutexLock lock(&mu_);
  std::vector<int> live;
  for (int r = 0; r < kReplicas; ++r) {
    if (lost_[r].empty()) live.push_back(r);
  }
  return live;
}

absl::Status ReplicatedTier::ReplicaError(int r, const absl::Status& s) const {
  return absl::Status(s.code(), absl::StrCat("KV replica ", r, " of 2 (",
                                             replicas_[r]->description(), "): ", s.message()));
}

absl::Status ReplicatedTier::BothLost() const {
  absl::ReaderMutexLock ops(&ops_mu_);
  return BothLostHeld();
}

absl::Status ReplicatedTier::BothLostHeld() const {
  absl::MutexLock lock(&mu_);
  return absl::UnavailableError(
      absl::StrCat("both KV replicas are lost: replica 0 (", replicas_[0]->description(),
                   "): ", lost_[0], "; replica 1 (", replicas_[1]->description(), "): ", lost_[1]));
}

ReplicatedTier::Outcome ReplicatedTier::OnLive(const std::function<absl::Status(int)>& fn) {
  const std::vector<int> live = Live();
  std::array<absl::Status, kReplicas> st;
  // The second replica beside the first: one round trip, not two.
  std::thread beside;
  if (live.size() > 1) beside = std::thread([&] { st[live[1]] = fn(live[1]); });
  if (!live.empty()) st[live[0]] = fn(live[0]);
  if (beside.joinable()) beside.join();
  Outcome out;
  for (int r : live) {
    if (st[r].ok()) {
      out.done.push_back(r);
    } else if (IsLoss(st[r])) {
      MarkLostHeld(r, st[r]);
    } else if (out.error.ok()) {
      out.error = ReplicaError(r, st[r]);
    }
  }
  if (out.done.empty() && out.error.ok()) out.error = BothLostHeld();
  return out;
}

absl::Status ReplicatedTier::CreateSequence(uint64_t seq, int32_t num_layers,
                                            int32_t num_kv_heads) {
  absl::ReaderMutexLock ops(&ops_mu_);
  const Outcome o =
      OnLive([&](int r) { return replicas_[r]->CreateSequence(seq, num_layers, num_kv_heads); });
  if (!o.error.ok()) {
    for (int r : o.done) replicas_[r]->FreeSequence(seq).IgnoreError();
    return o.error;
  }
  absl::MutexLock lock(&mu_);
  tables_.try_emplace(seq);
  shapes_[seq] = {num_layers, num_kv_heads};
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ReplicatedTier::FreeSequence(uint64_t seq) {
  absl::ReaderMutexLock ops(&ops_mu_);
  std::array<int64_t, kReplicas> freed = {0, 0};
  const Outcome o = OnLive([&](int r) {
    APR_ASSIGN_OR_RETURN(freed[r], replicas_[r]->FreeSequence(seq));
    return absl::OkStatus();
  });
  {
    // Released whatever the replicas said: the caller is done with the sequence.
    absl::MutexLock lock(&mu_);
    auto it = tables_.find(seq);
    if (it != tables_.end()) {
      for (const auto& [key, slot] : it->second) {
        slots_[slot] = {kNone, kNone};
        free_.push_back(slot);
      }
      tables_.erase(it);
    }
    shapes_.erase(seq);
  }
  if (!o.error.ok()) return o.error;
  return freed[o.done[0]];  // the same blocks on each replica: counted once
}

absl::StatusOr<std::vector<uint32_t>> ReplicatedTier::Append(
    uint64_t seq, absl::Span<const BlockKey> keys,
    const std::function<absl::StatusOr<std::vector<uint32_t>>(int)>& per_replica) {
  std::array<std::vector<uint32_t>, kReplicas> got;
  const Outcome o = OnLive([&](int r) {
    APR_ASSIGN_OR_RETURN(got[r], per_replica(r));
    if (got[r].size() != keys.size()) {
      return absl::InternalError(
          absl::StrCat(got[r].size(), " slots for ", keys.size(), " blocks"));
    }
    return absl::OkStatus();
  });
  if (!o.error.ok()) return o.error;
  absl::MutexLock lock(&mu_);
  Table& table = tables_[seq];
  std::vector<uint32_t> out(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    auto [it, fresh] = table.try_emplace(keys[i], kNone);
    if (fresh) {
      if (free_.empty() && slots_.size() >= kNone) {
        table.erase(it);
        return absl::ResourceExhaustedError("a replicated KV tier ran out of its 2^32 - 1 slots");
      }
      if (free_.empty()) {
        it->second = static_cast<uint32_t>(slots_.size());
        slots_.push_back({kNone, kNone});
      } else {
        it->second = free_.back();
        free_.pop_back();
      }
    }
    for (int r : o.done) slots_[it->second][r] = got[r][i];
    out[i] = it->second;
  }
  return out;
}

absl::StatusOr<std::vector<uint32_t>> ReplicatedTier::WriteBlocks(
    uint64_t seq, absl::Span<const BlockKey> keys, absl::Span<const std::byte* const> data) {
  if (keys.size() != data.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(keys.size(), " blocks but ", data.size(), " data pointers"));
  }
  absl::ReaderMutexLock ops(&ops_mu_);
  return Append(seq, keys, [&](int r) { return replicas_[r]->WriteBlocks(seq, keys, data); });
}

absl::StatusOr<std::vector<uint32_t>> ReplicatedTier::AllocateBlocks(
    uint64_t seq, absl::Span<const BlockKey> keys) {
  absl::ReaderMutexLock ops(&ops_mu_);
  return Append(seq, keys, [&](int r) { return replicas_[r]->AllocateBlocks(seq, keys); });
}

absl::StatusOr<std::vector<uint32_t>> ReplicatedTier::LookupSlots(uint64_t seq,
                                                                  absl::Span<const BlockKey> keys) {
  absl::MutexLock lock(&mu_);
  auto t = tables_.find(seq);
  if (t == tables_.end()) {
    return absl::NotFoundError(absl::StrCat("no sequence ", seq, " in the replicated KV tier"));
  }
  std::vector<uint32_t> out;
  out.reserve(keys.size());
  for (const BlockKey& k : keys) {
    auto it = t->second.find(k);
    if (it == t->second.end()) {
      return absl::NotFoundError(absl::StrCat("sequence ", seq, " has no block (layer ", k.layer,
                                              ", KV head ", k.kv_head, ", block ", k.block, ")"));
    }
    out.push_back(it->second);
  }
  return out;
}

absl::StatusOr<std::vector<uint32_t>> ReplicatedTier::Translate(int r,
                                                                absl::Span<const uint32_t> slots) {
  absl::MutexLock lock(&mu_);
  std::vector<uint32_t> out(slots.size());
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i] >= slots_.size() || slots_[slots[i]][r] == kNone) {
      return absl::OutOfRangeError(absl::StrCat("slot ", slots[i], " holds no block on KV replica ",
                                                r, " (", replicas_[r]->description(), ")"));
    }
    out[i] = slots_[slots[i]][r];
  }
  return out;
}

absl::Status ReplicatedTier::Issue(Pending* read) {
  for (int r : Live()) {
    APR_ASSIGN_OR_RETURN(std::vector<uint32_t> slots, Translate(r, read->slots));
    absl::StatusOr<ReadId> id = replicas_[r]->StartRead(slots, read->dst);
    if (id.ok()) {
      read->replica = r;
      read->tier = replicas_[r];
      read->id = *id;
      return absl::OkStatus();
    }
    if (!IsLoss(id.status())) return ReplicaError(r, id.status());
    MarkLostHeld(r, id.status());
  }
  return BothLostHeld();
}

absl::StatusOr<ReadId> ReplicatedTier::StartRead(absl::Span<const uint32_t> slots,
                                                 absl::Span<std::byte* const> dst) {
  if (slots.size() != dst.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(slots.size(), " slots but ", dst.size(), " destinations"));
  }
  absl::ReaderMutexLock ops(&ops_mu_);
  Pending read;
  read.slots.assign(slots.begin(), slots.end());
  read.dst.assign(dst.begin(), dst.end());
  APR_RETURN_IF_ERROR(Issue(&read));
  absl::MutexLock lock(&mu_);
  ++own_.reads;
  const ReadId id = next_id_++;
  reads_.emplace(id, std::move(read));
  return id;
}

bool ReplicatedTier::ReadDone(ReadId id) {
  std::shared_ptr<StagingTier> tier;
  ReadId rid;
  {
    absl::MutexLock lock(&mu_);
    auto it = reads_.find(id);
    if (it == reads_.end()) return true;
    tier = it->second.tier;
    rid = it->second.id;
  }
  return tier->ReadDone(rid);
}

absl::Status ReplicatedTier::WaitRead(ReadId id) {
  absl::ReaderMutexLock ops(&ops_mu_);
  Pending read;
  {
    absl::MutexLock lock(&mu_);
    auto it = reads_.find(id);
    if (it == reads_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("no read ", id, " in flight"));
    }
    read = std::move(it->second);
    reads_.erase(it);
  }
  const bool blocked = !read.tier->ReadDone(read.id);
  const absl::Time start = absl::Now();
  absl::Status s;
  // At most once per replica: a lost replica is never read again.
  for (int tries = 0; tries < kReplicas; ++tries) {
    s = read.tier->WaitRead(read.id);
    if (s.ok()) break;
    if (!IsLoss(s)) {
      s = ReplicaError(read.replica, s);
      break;
    }
    MarkReadLost(read, s);
    s = Issue(&read);  // the same blocks from the survivor
    if (!s.ok()) break;
  }
  absl::MutexLock lock(&mu_);
  ++own_.waits;
  if (blocked) ++own_.waits_blocked;
  own_.wait_seconds += absl::ToDoubleSeconds(absl::Now() - start);
  return s;
}

absl::StatusOr<BlockStoreStats> ReplicatedTier::NodeStats() {
  absl::ReaderMutexLock ops(&ops_mu_);
  std::array<BlockStoreStats, kReplicas> each;
  const Outcome o = OnLive([&](int r) {
    APR_ASSIGN_OR_RETURN(each[r], replicas_[r]->NodeStats());
    return absl::OkStatus();
  });
  if (!o.error.ok()) return o.error;
  BlockStoreStats out = each[o.done[0]];
  for (int r : o.done) {
    const BlockStoreStats& s = each[r];
    out.capacity_blocks = std::min(out.capacity_blocks, s.capacity_blocks);
    out.free_blocks = std::min(out.free_blocks, s.free_blocks);
    out.used_blocks = std::max(out.used_blocks, s.used_blocks);
    out.sequences = std::max(out.sequences, s.sequences);
    out.blocks_allocated_total = std::max(out.blocks_allocated_total, s.blocks_allocated_total);
    out.blocks_freed_total = std::max(out.blocks_freed_total, s.blocks_freed_total);
    out.allocation_failures = std::max(out.allocation_failures, s.allocation_failures);
    out.blocks_written_inline = std::max(out.blocks_written_inline, s.blocks_written_inline);
    out.blocks_read_inline = std::max(out.blocks_read_inline, s.blocks_read_inline);
    out.slots_looked_up = std::max(out.slots_looked_up, s.slots_looked_up);
  }
  out.block_bytes = block_bytes_;
  return out;
}

TierClientStats ReplicatedTier::stats() const {
  absl::ReaderMutexLock ops(&ops_mu_);
  TierClientStats sum;
  {
    absl::MutexLock lock(&mu_);
    sum = own_;  // reads and waits, which this tier counts; its nodes count the traffic
    for (const NodeTraffic& t : retired_) AddTraffic(t.stats, &sum);
  }
  for (const auto& replica : replicas_) AddTraffic(replica->stats(), &sum);
  return sum;
}

std::vector<NodeTraffic> ReplicatedTier::node_traffic() const {
  absl::ReaderMutexLock ops(&ops_mu_);
  std::vector<NodeTraffic> all = NodeTrafficOf(replicas_);
  absl::MutexLock lock(&mu_);
  for (const NodeTraffic& old : retired_) {  // a restored replica's nodes, before Restore
    auto same = std::find_if(all.begin(), all.end(),
                             [&](const NodeTraffic& t) { return t.node == old.node; });
    if (same == all.end()) {
      all.push_back(old);
    } else {
      AddTraffic(old.stats, &same->stats);
    }
  }
  return all;
}

absl::Status ReplicatedTier::RegisterStaging(void* address, size_t length) {
  absl::ReaderMutexLock ops(&ops_mu_);
  const Outcome o = OnLive([&](int r) { return replicas_[r]->RegisterStaging(address, length); });
  if (!o.error.ok()) {
    for (int r : o.done) replicas_[r]->UnregisterStaging(address);
    return o.error;
  }
  absl::MutexLock lock(&mu_);
  staging_[address] = length;
  return absl::OkStatus();
}

void ReplicatedTier::UnregisterStaging(void* address) {
  absl::ReaderMutexLock ops(&ops_mu_);
  // Both, lost or not: a registration must not outlive the memory.
  for (const auto& replica : replicas_) replica->UnregisterStaging(address);
  absl::MutexLock lock(&mu_);
  staging_.erase(address);
}

}  // namespace apr::kvstore
