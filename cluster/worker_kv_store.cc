#include "cluster/worker_kv_store.h"

#include <cstdio>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "kvstore/client/connect_nodes.h"
#include "kvstore/client/copy_restorer.h"
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

WorkerKvStore::~WorkerKvStore() = default;

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

void WorkerKvStore::TryRestoreCopy() {
  if (restorer_ == nullptr) return;
  for (const kvstore::CopyRestorer::RestoredNode& r : restorer_->MaybeRestore()) {
    nodes_[r.index] = r.node;
    auto health = r.node->Health();
    // Unknown until it answers: the next check then takes it for a restart and drops the
    // copy again, which is safe (a restore copies it back).
    node_pids_[r.index] = health.ok() ? health->pid() : -1;
    std::fprintf(stderr, "worker: KV copy %d restored in storage node %s (pid %lld)%s\n",
                 ReplicaOf(r.index), options_.addresses[r.index].c_str(),
                 static_cast<long long>(node_pids_[r.index]),
                 NodeRole(r.index, options_.addresses.size()).c_str());
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
  restorer_.reset();
  if (replicated_ != nullptr) {
    restorer_ =
        std::make_unique<kvstore::CopyRestorer>(options_.addresses, NodeOptions(), replicated_);
  }
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
    restorer_.reset();
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
