// ReplicatedTier::Restore (re-replication, docs/KVSTORE.md "Replication"): a lost replica
// replaced by a fresh tier that gets a copy of every block from the survivor.
#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "kvstore/client/replicated_tier.h"

namespace apr::kvstore {
namespace {

// Blocks per read from the survivor and write to the fresh replica: large enough that the
// copy streams (one round trip per 256 blocks), small enough to bound the host buffer
// (256 blocks of 64 KiB: 16 MiB).
constexpr size_t kCopyBlocks = 256;

}  // namespace

std::vector<ReplicatedTier::SequenceBlocks> ReplicatedTier::SnapshotSequences() const {
  absl::MutexLock lock(&mu_);
  std::vector<SequenceBlocks> out;
  for (const auto& [seq, table] : tables_) {
    SequenceBlocks s;
    s.seq = seq;
    if (auto shape = shapes_.find(seq); shape != shapes_.end()) {
      std::tie(s.num_layers, s.num_kv_heads) = shape->second;
    }
    s.blocks.assign(table.begin(), table.end());
    // In block order, so that the fresh replica appends each table's blocks in order.
    std::sort(s.blocks.begin(), s.blocks.end(), [](const auto& a, const auto& b) {
      return std::tie(a.first.layer, a.first.kv_head, a.first.block) <
             std::tie(b.first.layer, b.first.kv_head, b.first.block);
    });
    out.push_back(std::move(s));
  }
  return out;
}

absl::Status ReplicatedTier::CopySequence(int source, const SequenceBlocks& seq, StagingTier& fresh,
                                          RestoredSlots* out) {
  if (seq.num_layers <= 0) {
    return absl::InternalError(absl::StrCat("sequence ", seq.seq, " has no recorded shape"));
  }
  absl::Status made = fresh.CreateSequence(seq.seq, seq.num_layers, seq.num_kv_heads);
  if (absl::IsAlreadyExists(made)) {  // a stale copy from before the loss: start again
    APR_RETURN_IF_ERROR(fresh.FreeSequence(seq.seq).status());
    made = fresh.CreateSequence(seq.seq, seq.num_layers, seq.num_kv_heads);
  }
  APR_RETURN_IF_ERROR(made);
  std::vector<std::byte> buffer(std::min(seq.blocks.size(), kCopyBlocks) * block_bytes_);
  for (size_t first = 0; first < seq.blocks.size(); first += kCopyBlocks) {
    const size_t n = std::min(kCopyBlocks, seq.blocks.size() - first);
    std::vector<BlockKey> keys(n);
    std::vector<uint32_t> own(n);
    std::vector<std::byte*> dst(n);
    std::vector<const std::byte*> src(n);
    for (size_t i = 0; i < n; ++i) {
      std::tie(keys[i], own[i]) = seq.blocks[first + i];
      src[i] = dst[i] = buffer.data() + i * block_bytes_;
    }
    APR_ASSIGN_OR_RETURN(std::vector<uint32_t> from, Translate(source, own));
    if (absl::Status s = replicas_[source]->Read(from, dst); !s.ok()) {
      if (s.code() == absl::StatusCode::kUnavailable) MarkLostHeld(source, s);
      return ReplicaError(source, s);
    }
    APR_ASSIGN_OR_RETURN(std::vector<uint32_t> to, fresh.WriteBlocks(seq.seq, keys, src));
    if (to.size() != n) {
      return absl::InternalError(absl::StrCat(to.size(), " slots for ", n, " blocks"));
    }
    for (size_t i = 0; i < n; ++i) out->emplace_back(own[i], to[i]);
  }
  return absl::OkStatus();
}

absl::Status ReplicatedTier::MoveStaging(StagingTier& old_replica, StagingTier& fresh) {
  absl::flat_hash_map<void*, size_t> staging;
  {
    absl::MutexLock lock(&mu_);
    staging = staging_;
  }
  std::vector<void*> done;
  for (const auto& [address, length] : staging) {
    if (absl::Status s = fresh.RegisterStaging(address, length); !s.ok()) {
      for (void* a : done) fresh.UnregisterStaging(a);
      return s;
    }
    done.push_back(address);
  }
  // The old replica may outlive this tier (a read in flight holds it): no registration
  // of memory this tier's owner will free may stay behind in it.
  for (const auto& [address, length] : staging) old_replica.UnregisterStaging(address);
  return absl::OkStatus();
}

absl::Status ReplicatedTier::Restore(int r, std::shared_ptr<StagingTier> fresh) {
  if (r < 0 || r >= kReplicas || fresh == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("no KV replica ", r, " to restore"));
  }
  if (fresh->block_bytes() != block_bytes_) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot restore KV replica ", r, " onto ", fresh->description(), ": its ",
                     fresh->block_bytes(), "-byte blocks are not this tier's ", block_bytes_));
  }
  absl::WriterMutexLock ops(&ops_mu_);  // no other call runs until the copy is in place
  const int source = 1 - r;
  if (!lost(r)) {
    return absl::FailedPreconditionError(
        absl::StrCat("KV replica ", r, " of 2 (", replicas_[r]->description(), ") is not lost"));
  }
  if (lost(source)) return BothLostHeld();
  const absl::Time start = absl::Now();
  const std::vector<SequenceBlocks> sequences = SnapshotSequences();
  RestoredSlots restored;
  absl::Status s;
  size_t made = 0;
  for (; made < sequences.size() && s.ok(); ++made) {
    s = CopySequence(source, sequences[made], *fresh, &restored);
  }
  if (s.ok()) s = MoveStaging(*replicas_[r], *fresh);
  if (!s.ok()) {
    for (size_t i = 0; i < made; ++i) fresh->FreeSequence(sequences[i].seq).IgnoreError();
    return absl::Status(s.code(), absl::StrCat("restoring KV replica ", r, " onto ",
                                               fresh->description(), ": ", s.message()));
  }
  const std::string old_name = replicas_[r]->description();
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [own, slot] : restored) slots_[own][r] = slot;
    for (NodeTraffic& t : replicas_[r]->node_traffic()) retired_.push_back(std::move(t));
    lost_[r].clear();
  }
  replicas_[r] = std::move(fresh);
  std::fprintf(stderr,
               "kvstore: KV replica %d of 2 restored on %s (was %s): %zu blocks of %zu "
               "sequences copied from replica %d in %.2f s\n",
               r, replicas_[r]->description().c_str(), old_name.c_str(), restored.size(),
               sequences.size(), source, absl::ToDoubleSeconds(absl::Now() - start));
  return absl::OkStatus();
}

}  // namespace apr::kvstore
