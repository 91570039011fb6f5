#include "cluster/worker_kv_store.h"

#include <cstdio>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "kvstore/client/remote_tier.h"
#include "kvstore/tier_kv_offload.h"

namespace apr::cluster {
namespace {

// What a sequence's offload needs alive; members go in reverse order (offload first).
struct Owner {
  std::shared_ptr<kvstore::RemoteTier> tier;
  std::unique_ptr<kvstore::TierKvOffload> offload;
};

}  // namespace

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

absl::StatusOr<std::shared_ptr<kvstore::RemoteTier>> WorkerKvStore::Tier() {
  absl::MutexLock l(&mu_);
  if (tier_ != nullptr) {
    auto health = tier_->Health();
    if (health.ok() && health->pid() == tier_pid_) return tier_;
    const std::string why =
        health.ok() ? absl::StrCat("restarted (pid ", health->pid(), ", was ", tier_pid_, ")")
                    : "stopped answering";
    std::fprintf(stderr, "worker: storage node %s %s; reconnecting\n", options_.address.c_str(),
                 why.c_str());
    // Sequences still on the old node keep it alive until they are rebuilt or freed.
    tier_.reset();
  }
  kvstore::RemoteTierOptions o;
  o.address = options_.address;
  o.ucx.tls = options_.ucx_tls;
  o.ucx.net_devices = options_.ucx_net_devices;
  o.tls = options_.tls;
  o.auth_token_file = options_.auth_token_file;
  // Short bounds: a lost node must fail a step within seconds, not hang it.
  o.rpc_timeout = absl::Seconds(2);
  o.data_timeout = absl::Seconds(5);
  const absl::Time deadline = absl::Now() + absl::Seconds(options_.reconnect_timeout_seconds);
  absl::Status last;
  do {
    auto t = kvstore::RemoteTier::Connect(o);
    if (t.ok()) {
      std::shared_ptr<kvstore::RemoteTier> tier(std::move(*t));
      auto health = tier->Health();
      if (health.ok()) {
        std::fprintf(stderr, "worker: KV blocks in storage node %s (%s, pid %lld)\n",
                     options_.address.c_str(), health->node_name().c_str(),
                     static_cast<long long>(health->pid()));
        tier_ = std::move(tier);
        tier_pid_ = health->pid();
        return tier_;
      }
      last = health.status();
    } else {
      last = t.status();
    }
    absl::SleepFor(absl::Milliseconds(200));
  } while (absl::Now() < deadline);
  return absl::UnavailableError(
      absl::StrCat("storage node ", options_.address, " did not answer within ",
                   options_.reconnect_timeout_seconds, " s: ", last.message()));
}

}  // namespace apr::cluster
