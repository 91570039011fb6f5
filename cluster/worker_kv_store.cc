#include "cluster/worker_kv_store.h"

#include <cstdio>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "kvstore/client/connect_nodes.h"
#include "kvstore/client/remote_tier.h"
#include "kvstore/client/replicated_tier.h"
#include "kvstore/tier_kv_offload.h"

namespace apr::cluster {
namespace {

// What a sequence's offload needs alive; members go in reverse order (offload first).
struct Owner {
  std::shared_ptr<kvstore::TierClient> tier;
  std::unique_ptr<kvstore::TierKvOffload> offload;
};

// How often a lost KV copy's nodes are probed for a restore: each probe of a dead node
// may cost the RPC timeout in the sequence creation that runs it.
constexpr double kRestoreProbeSeconds = 2;

}  // namespace

// For the log: ", KV copy 1 of 2, KV shard 0 of 2" and the like ("" for one plain node).
std::string WorkerKvStore::NodeRole(size_t i, size_t n) const {
  std::string out;
  size_t per_copy = n;
  if (options_.replication == 2) {
    per_copy = n / 2;
    absl::StrAppend(&out, ", KV copy ", ReplicaOf(i), " of 2");
  }
  if (per_copy > 1) absl::StrAppend(&out, ", KV shard ", i % per_copy, " of ", per_copy);
  return out;
}

WorkerKvStore::WorkerKvStore(WorkerKvStoreOptions options)
    : options_(std::move(options)),
      id_salt_((uint64_t{std::random_device()()} << 32) | std::random_device()()) {}

bool WorkerKvStore::NodeLost(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kUnavailable:         // the node or its UCX endpoint is gone
    case absl::StatusCode::kDeadlineExceeded:    // a transfer or call timed out
    case absl::StatusCode::kFailedPrecondition:  // the sequence broken by an earlier error
    case absl::StatusCode::kNotFound:  // a node restarted at the same address: no such sequence
      return true;
    default:
      return false;
  }
}

DecoderStepEngineOptions WorkerKvStore::EngineOptions(cpu::CpuDecoder* decoder) {
  DecoderStepEngineOptions o;
  o.new_sequence = [this, decoder](uint64_t id) { return NewSequence(decoder, id); };
  o.recoverable = &WorkerKvStore::NodeLost;
  return o;
}

absl::StatusOr<OwnedSequence> WorkerKvStore::NewSequence(cpu::CpuDecoder* decoder, uint64_t id) {
  auto tier = Tier();
  if (!tier.ok()) return tier.status();
  const ModelConfig& mc = decoder->config();
  auto owner = std::make_shared<Owner>();
  owner->tier = *tier;
  auto offload = kvstore::TierKvOffload::Create(
      owner->tier.get(), {id ^ id_salt_, static_cast<int32_t>(mc.num_hidden_layers),
                          static_cast<int32_t>(mc.num_key_value_heads), 0});
  if (!offload.ok()) return offload.status();
  owner->offload = *std::move(offload);
  auto seq = decoder->NewOffloadedSequence(owner->offload.get());
  if (!seq.ok()) return seq.status();
  return OwnedSequence{owner, *std::move(seq)};
}

int WorkerKvStore::ReplicaOf(size_t i) const {
  return kvstore::ReplicaOfNode(static_cast<int>(i), static_cast<int>(options_.addresses.size()),
                                options_.replication);
}

std::string WorkerKvStore::LostNode() {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (replicated_ != nullptr && replicated_->lost(ReplicaOf(i))) continue;  // not used now
    auto health = nodes_[i]->Health();
    if (health.ok() && health->pid() == node_pids_[i]) continue;
    const std::string why = absl::StrCat(
        options_.addresses[i], " ",
        health.ok() ? absl::StrCat("restarted (pid ", health->pid(), ", was ", node_pids_[i], ")")
                    : "stopped answering");
    if (replicated_ == nullptr) return why;
    // A restarted node lost its blocks as surely as a dead one: its copy is gone.
    replicated_->MarkLost(ReplicaOf(i), absl::UnavailableError("storage node " + why));
  }
  if (replicated_ != nullptr && replicated_->lost(0) && replicated_->lost(1)) {
    return absl::StrCat(absl::StrJoin(options_.addresses, " and "), ": both KV copies are lost");
  }
  return "";
}

kvstore::RemoteTierOptions WorkerKvStore::NodeOptions() const {
  kvstore::RemoteTierOptions o;
  o.ucx.tls = options_.ucx_tls;
  o.ucx.net_devices = options_.ucx_net_devices;
  o.tls = options_.tls;
  o.auth_token_file = options_.auth_token_file;
  // Short bounds: a lost node must fail a step within seconds, not hang it.
  o.rpc_timeout = absl::Seconds(2);
  o.data_timeout = absl::Seconds(5);
  return o;
}

absl::Status WorkerKvStore::RestoreCopy(int copy, const std::vector<size_t>& nodes) {
  std::vector<std::string> addresses;
  for (size_t i : nodes) addresses.push_back(options_.addresses[i]);
  APR_ASSIGN_OR_RETURN(auto connected, kvstore::ConnectRemoteTiers(addresses, NodeOptions()));
  std::vector<int64_t> pids;
  for (const auto& node : connected) {
    APR_ASSIGN_OR_RETURN(auto health, node->Health());
    pids.push_back(health.pid());
  }
  APR_ASSIGN_OR_RETURN(auto tier, kvstore::TierOverNodes(connected));
  APR_RETURN_IF_ERROR(replicated_->Restore(copy, tier));
  for (size_t k = 0; k < nodes.size(); ++k) {
    nodes_[nodes[k]] = connected[k];
    node_pids_[nodes[k]] = pids[k];
    std::fprintf(stderr, "worker: KV copy %d restored in storage node %s (pid %lld)%s\n", copy,
                 addresses[k].c_str(), static_cast<long long>(pids[k]),
                 NodeRole(nodes[k], options_.addresses.size()).c_str());
  }
  return absl::OkStatus();
}

void WorkerKvStore::TryRestoreCopy() {
  if (replicated_ == nullptr || absl::Now() < next_restore_probe_) return;
  for (int copy = 0; copy < 2; ++copy) {
    if (!replicated_->lost(copy) || replicated_->lost(1 - copy)) continue;
    next_restore_probe_ = absl::Now() + absl::Seconds(kRestoreProbeSeconds);
    std::vector<size_t> nodes;
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (ReplicaOf(i) != copy) continue;
      if (!nodes_[i]->Health().ok()) return;  // not back yet
      nodes.push_back(i);
    }
    if (absl::Status s = RestoreCopy(copy, nodes); !s.ok()) {
      std::fprintf(stderr, "worker: restoring KV copy %d failed (retried in %.0f s): %s\n", copy,
                   kRestoreProbeSeconds, s.ToString().c_str());
    }
    return;
  }
}

absl::Status WorkerKvStore::Connect() {
  auto nodes = kvstore::ConnectRemoteTiers(options_.addresses, NodeOptions());
  if (!nodes.ok()) return nodes.status();
  std::vector<int64_t> pids;
  for (size_t i = 0; i < nodes->size(); ++i) {
    auto health = (*nodes)[i]->Health();
    if (!health.ok()) return health.status();
    pids.push_back(health->pid());
    std::fprintf(stderr, "worker: KV blocks in storage node %s (%s, pid %lld)%s\n",
                 options_.addresses[i].c_str(), health->node_name().c_str(),
                 static_cast<long long>(health->pid()), NodeRole(i, nodes->size()).c_str());
  }
  auto tier = kvstore::TierOverNodes(*nodes, options_.replication);
  if (!tier.ok()) return tier.status();
  tier_ = *std::move(tier);
  replicated_ = std::dynamic_pointer_cast<kvstore::ReplicatedTier>(tier_);
  nodes_ = *std::move(nodes);
  node_pids_ = std::move(pids);
  return absl::OkStatus();
}

std::vector<std::pair<std::string, int64_t>> WorkerKvStore::NodeBytesRead() {
  absl::MutexLock l(&mu_);
  std::map<std::string, int64_t> bytes = retired_bytes_;
  if (tier_ != nullptr) {
    for (const kvstore::NodeTraffic& t : tier_->node_traffic()) bytes[t.node] += t.stats.bytes_read;
  }
  std::vector<std::pair<std::string, int64_t>> out;
  for (const std::string& a : options_.addresses) out.emplace_back(a, bytes[a]);
  return out;
}

absl::StatusOr<std::shared_ptr<kvstore::TierClient>> WorkerKvStore::Tier() {
  absl::MutexLock l(&mu_);
  if (tier_ != nullptr) {
    const std::string lost = LostNode();
    if (lost.empty()) {
      TryRestoreCopy();
      return tier_;
    }
    std::fprintf(stderr, "worker: storage node %s; reconnecting\n", lost.c_str());
    // Sequences still on the old nodes keep them alive until they are rebuilt or freed.
    for (const kvstore::NodeTraffic& t : tier_->node_traffic())
      retired_bytes_[t.node] += t.stats.bytes_read;
    tier_.reset();
    replicated_.reset();
    nodes_.clear();
    node_pids_.clear();
  }
  // A count the replication cannot split is the config's fault: no point in waiting.
  if (absl::Status s = kvstore::CheckReplication(static_cast<int>(options_.addresses.size()),
                                                 options_.replication);
      !s.ok()) {
    return s;
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(options_.reconnect_timeout_seconds);
  absl::Status last;
  do {
    last = Connect();
    if (last.ok()) return tier_;
    absl::SleepFor(absl::Milliseconds(200));
  } while (absl::Now() < deadline);
  return absl::UnavailableError(absl::StrCat(
      "storage node(s) ", absl::StrJoin(options_.addresses, ", "), " did not answer within ",
      options_.reconnect_timeout_seconds, " s: ", last.message()));
}

}  // namespace apr::cluster
