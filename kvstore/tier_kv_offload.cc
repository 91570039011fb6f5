#include "kvstore/tier_kv_offload.h"

#include <algorithm>
#include <cstring>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace apr::kvstore {
namespace {

std::string RefName(const KvBlockRef& r) {
  return absl::StrCat("layer ", r.layer, " KV head ", r.kv_head, " block ", r.block);
}

}  // namespace

absl::StatusOr<std::unique_ptr<TierKvOffload>> TierKvOffload::Create(
    TierClient* tier, const TierKvOffloadOptions& o) {
  if (o.num_layers <= 0 || o.num_kv_heads <= 0 || o.cache_blocks_per_head < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("offload geometry: ", o.num_layers, " layers, ", o.num_kv_heads, " KV heads, ",
                     o.cache_blocks_per_head, " cache blocks per head"));
  }
  std::unique_ptr<TierKvOffload> t(new TierKvOffload(tier, o));
  if (o.cache_blocks_per_head > 0) {
    auto memory = HostRegion::Allocate(static_cast<size_t>(o.num_layers) * o.num_kv_heads *
                                           o.cache_blocks_per_head * tier->block_bytes(),
                                       /*populate=*/false);
    if (!memory.ok()) return memory.status();
    t->cache_memory_ = *std::move(memory);
  }
  if (absl::Status s = tier->CreateSequence(o.sequence_id, o.num_layers, o.num_kv_heads); !s.ok()) {
    t->closed_ = true;
    return s;
  }
  return t;
}

TierKvOffload::TierKvOffload(TierClient* tier, const TierKvOffloadOptions& o)
    : tier_(tier), options_(o) {
  const int64_t tables = int64_t{o.num_layers} * o.num_kv_heads;
  tables_.resize(tables);
  if (o.cache_blocks_per_head > 0) caches_.assign(tables, BlockCache(o.cache_blocks_per_head));
  pending_.resize(o.num_layers);
}

TierKvOffload::~TierKvOffload() {
  if (closed_) return;
  if (auto s = Close(); !s.ok()) {
    std::cerr << "kvstore: freeing sequence " << options_.sequence_id << " in "
              << tier_->description() << " failed: " << s.status() << "\n";
  }
}

absl::StatusOr<int64_t> TierKvOffload::Close() {
  {
    absl::MutexLock lock(&mu_);
    // Reads in flight write into the cache memory: let them finish first.
    for (int64_t l = 0; l < options_.num_layers; ++l) FinishPrefetch(l, false).IgnoreError();
  }
  closed_ = true;
  return tier_->FreeSequence(options_.sequence_id);
}

std::byte* TierKvOffload::CacheSlot(int64_t table, int32_t slot) const {
  return cache_memory_.data() +
         (table * options_.cache_blocks_per_head + slot) * tier_->block_bytes();
}

absl::Status TierKvOffload::CheckRef(const KvBlockRef& r, bool written) const {
  if (r.layer < 0 || r.layer >= options_.num_layers || r.kv_head < 0 ||
      r.kv_head >= options_.num_kv_heads || r.block < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(RefName(r), " is outside sequence ", options_.sequence_id, "'s ",
                     options_.num_layers, " layers x ", options_.num_kv_heads, " KV heads"));
  }
  if (written && r.block >= static_cast<int64_t>(tables_[TableIndex(r)].size())) {
    return absl::NotFoundError(absl::StrCat(RefName(r), " of sequence ", options_.sequence_id,
                                            " was never written to the storage tier"));
  }
  return absl::OkStatus();
}

absl::Status TierKvOffload::WriteBlocks(absl::Span<const KvBlockRef> blocks,
                                        absl::Span<const void* const> data) {
  std::vector<BlockKey> keys;
  keys.reserve(blocks.size());
  {
    absl::MutexLock lock(&mu_);
    for (const KvBlockRef& r : blocks) {
      APR_RETURN_IF_ERROR(CheckRef(r, false));
      keys.push_back({static_cast<int32_t>(r.layer), static_cast<int32_t>(r.kv_head), r.block});
    }
  }
  std::vector<const std::byte*> ptrs(data.size());
  for (size_t i = 0; i < data.size(); ++i) ptrs[i] = static_cast<const std::byte*>(data[i]);
  auto slots = tier_->WriteBlocks(options_.sequence_id, keys, ptrs);
  if (!slots.ok()) return slots.status();
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < blocks.size(); ++i) {
    std::vector<uint32_t>& t = tables_[TableIndex(blocks[i])];
    if (blocks[i].block == static_cast<int64_t>(t.size())) {
      t.push_back((*slots)[i]);
    } else {
      t[blocks[i].block] = (*slots)[i];
      // Rewritten: a cached copy is stale.
      if (!caches_.empty()) caches_[TableIndex(blocks[i])].Invalidate(blocks[i].block);
    }
  }
  stats_.blocks_written += static_cast<int64_t>(blocks.size());
  return absl::OkStatus();
}

void TierKvOffload::ClearLayer(int64_t layer) {
  for (int64_t h = 0; h < options_.num_kv_heads; ++h) {
    caches_[layer * options_.num_kv_heads + h].Clear();
  }
}

absl::Status TierKvOffload::FinishPrefetch(int64_t layer, bool count) {
  if (!pending_[layer].has_value()) return absl::OkStatus();
  const ReadId id = *pending_[layer];
  pending_[layer].reset();
  if (count) {
    ++stats_.prefetch_waits;
    if (!tier_->ReadDone(id)) ++stats_.stalls;
  }
  absl::Status s = tier_->WaitRead(id);
  if (!s.ok()) ClearLayer(layer);
  return s;
}

absl::Status TierKvOffload::PlanAndFetch(absl::Span<const KvBlockRef> blocks,
                                         std::vector<int32_t>* slots, std::optional<ReadId>* id,
                                         int64_t* fetched) {
  // Group by table, keeping each block's position in `blocks`.
  slots->assign(blocks.size(), -1);
  std::vector<std::pair<int64_t, std::vector<size_t>>> groups;
  for (size_t i = 0; i < blocks.size(); ++i) {
    const int64_t t = TableIndex(blocks[i]);
    auto g =
        std::find_if(groups.begin(), groups.end(), [t](const auto& x) { return x.first == t; });
    if (g == groups.end()) {
      groups.push_back({t, {}});
      g = groups.end() - 1;
    }
    g->second.push_back(i);
  }
  std::vector<uint32_t> src;
  std::vector<std::byte*> dst;
  CachePlan plan;
  std::vector<int64_t> wanted;
  for (const auto& [t, members] : groups) {
    wanted.clear();
    for (size_t i : members) wanted.push_back(blocks[i].block);
    if (absl::Status s = caches_[t].Plan(wanted, &plan); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("sequence ", options_.sequence_id, " ",
                                                 RefName(blocks[members[0]]), ": ", s.message()));
    }
    for (size_t k = 0; k < members.size(); ++k) (*slots)[members[k]] = plan.slot[k];
    for (int32_t k : plan.fetch) {
      src.push_back(tables_[t][wanted[k]]);
      dst.push_back(CacheSlot(t, plan.slot[k]));
    }
  }
  *fetched = static_cast<int64_t>(src.size());
  if (src.empty()) return absl::OkStatus();
  auto rid = tier_->StartRead(src, dst);
  if (!rid.ok()) {
    for (const auto& [t, members] : groups) caches_[t].Clear();
    return rid.status();
  }
  *id = *rid;
  stats_.blocks_fetched += *fetched;
  stats_.bytes_fetched += *fetched * tier_->block_bytes();
  return absl::OkStatus();
}

absl::Status TierKvOffload::ReadBlocks(absl::Span<const KvBlockRef> blocks,
                                       absl::Span<void* const> dst) {
  if (blocks.size() != dst.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(blocks.size(), " blocks but ", dst.size(), " destinations"));
  }
  absl::MutexLock lock(&mu_);
  for (const KvBlockRef& r : blocks) {
    APR_RETURN_IF_ERROR(CheckRef(r, true));
  }
  stats_.blocks_requested += static_cast<int64_t>(blocks.size());
  const int64_t bb = tier_->block_bytes();
  if (caches_.empty()) {  // no cache: everything moves, straight into dst
    std::vector<uint32_t> src(blocks.size());
    std::vector<std::byte*> out(blocks.size());
    for (size_t i = 0; i < blocks.size(); ++i) {
      src[i] = tables_[TableIndex(blocks[i])][blocks[i].block];
      out[i] = static_cast<std::byte*>(dst[i]);
    }
    APR_RETURN_IF_ERROR(tier_->Read(src, out));
    stats_.blocks_fetched += static_cast<int64_t>(blocks.size());
    stats_.bytes_fetched += static_cast<int64_t>(blocks.size()) * bb;
    stats_.late_blocks += static_cast<int64_t>(blocks.size());
    return absl::OkStatus();
  }
  // Prefetches of these layers first: the step waits on them only.
  std::vector<bool> layer_seen(options_.num_layers, false);
  for (const KvBlockRef& r : blocks) {
    if (layer_seen[r.layer]) continue;
    layer_seen[r.layer] = true;
    APR_RETURN_IF_ERROR(FinishPrefetch(r.layer, true));
  }
  std::vector<int32_t> slots;
  std::optional<ReadId> id;
  int64_t fetched = 0;
  APR_RETURN_IF_ERROR(PlanAndFetch(blocks, &slots, &id, &fetched));
  stats_.cache_hits += static_cast<int64_t>(blocks.size()) - fetched;
  stats_.late_blocks += fetched;
  if (id.has_value()) {
    if (absl::Status s = tier_->WaitRead(*id); !s.ok()) {
      for (int64_t l = 0; l < options_.num_layers; ++l)
        if (layer_seen[l]) ClearLayer(l);
      return s;
    }
  }
  for (size_t i = 0; i < blocks.size(); ++i) {
    std::memcpy(dst[i], CacheSlot(TableIndex(blocks[i]), slots[i]), bb);
  }
  return absl::OkStatus();
}

absl::Status TierKvOffload::Prefetch(absl::Span<const KvBlockRef> blocks) {
  if (caches_.empty()) {
    return absl::FailedPreconditionError("Prefetch needs a block cache (cache_blocks_per_head)");
  }
  if (blocks.empty()) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  const int64_t layer = blocks[0].layer;
  for (const KvBlockRef& r : blocks) {
    APR_RETURN_IF_ERROR(CheckRef(r, true));
    if (r.layer != layer) {
      return absl::InvalidArgumentError("a prefetch covers one layer");
    }
  }
  APR_RETURN_IF_ERROR(FinishPrefetch(layer, false));
  std::vector<int32_t> slots;
  std::optional<ReadId> id;
  int64_t fetched = 0;
  APR_RETURN_IF_ERROR(PlanAndFetch(blocks, &slots, &id, &fetched));
  stats_.prefetched_blocks += fetched;
  pending_[layer] = id;
  return absl::OkStatus();
}

TierKvOffloadStats TierKvOffload::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace apr::kvstore
