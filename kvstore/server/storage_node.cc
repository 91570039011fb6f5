#include "kvstore/server/storage_node.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "grpcpp/grpcpp.h"
#include "kvstore/block_range.h"
#include "kvstore/grpc_status.h"
#include "kvstore/security.h"
#include "rpc/kvstore/v1/kvstore.grpc.pb.h"

namespace apr::kvstore {

// Largest control-plane message: inline block data of a long prefill.
constexpr int kMaxMessageBytes = 512 << 20;

namespace {

// Who made a call, once admitted: the lease owner it names (0: none) and the principal
// its sequences belong to ("" when the node checks no identity: plaintext, no token).
struct Caller {
  uint64_t owner = 0;
  std::string principal;
};

// The verified client certificate's identity (its subjectAltNames, else its CN).
std::string PeerCertificateIdentity(const grpc::ServerContext& ctx) {
  const std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  std::string id;
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return id;
  for (const grpc::string_ref& s : auth->GetPeerIdentity()) {
    absl::StrAppend(&id, id.empty() ? "" : ",", absl::string_view(s.data(), s.size()));
  }
  return id;
}

uint64_t OwnerOf(const std::multimap<grpc::string_ref, grpc::string_ref>& md) {
  auto it = md.find(kOwnerMetadata);
  uint64_t owner = 0;
  if (it == md.end() ||
      !absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &owner)) {
    return 0;
  }
  return owner;
}

}  // namespace

class StorageNode::Service final : public v1::KvStore::Service {
 public:
  // `token`: the bearer token every call must carry ("": none); `mtls`: clients present
  // verified certificates, whose identity then owns their sequences.
  Service(StorageNode& node, v1::DataPlaneInfo data_plane, std::string token, bool mtls)
      : node_(node), data_plane_(std::move(data_plane)), token_(std::move(token)), mtls_(mtls) {}

  int64_t rpcs_served() const { return rpcs_.load(std::memory_order_relaxed); }

  // Frees the sequences of every owner not heard from since `now - lease`; returns how
  // many sequences and blocks were freed.
  std::pair<int64_t, int64_t> ExpireLeases(absl::Time now, absl::Duration lease);

  grpc::Status Health(grpc::ServerContext* ctx, const v1::HealthRequest*,
                      v1::HealthResponse* out) override {
    Caller caller;
    if (grpc::Status s = Admit(*ctx, &caller); !s.ok()) return s;
    out->set_serving(true);
    out->set_node_name(node_.node_name_);
    out->set_pid(getpid());
    out->set_uptime_seconds(absl::ToDoubleSeconds(absl::Now() - node_.started_));
    return grpc::Status::OK;
  }

  grpc::Status GetDataPlane(grpc::ServerContext* ctx, const v1::GetDataPlaneRequest*,
                            v1::DataPlaneInfo* out) override {
    // The rkey and worker address open the whole pool to one-sided UCX operations: only
    // to callers that passed the checks.
    Caller caller;
    if (grpc::Status s = Admit(*ctx, &caller); !s.ok()) return s;
    *out = data_plane_;
    return grpc::Status::OK;
  }

  grpc::Status CreateSequence(grpc::ServerContext* ctx, const v1::CreateSequenceRequest* in,
                              v1::CreateSequenceResponse*) override {
    Caller caller;
    if (grpc::Status s = Admit(*ctx, &caller); !s.ok()) return s;
    const uint64_t seq = in->sequence_id();
    // Created and owned in one step: no other client can reach it in between.
    absl::MutexLock l(&lease_mu_);
    absl::Status s = store().CreateSequence(seq, in->num_layers(), in->num_kv_heads());
    if (s.ok() && caller.owner != 0) sequence_owner_[seq] = caller.owner;
    if (s.ok() && !caller.principal.empty()) sequence_principal_[seq] = caller.principal;
    return ToGrpc(s);
  }

  grpc::Status FreeSequence(grpc::ServerContext* ctx, const v1::FreeSequenceRequest* in,
                            v1::FreeSequenceResponse* out) override {
    if (grpc::Status s = AdmitFor(*ctx, in->sequence_id()); !s.ok()) return s;
    auto freed = store().FreeSequence(in->sequence_id());
    {
      absl::MutexLock l(&lease_mu_);
      sequence_owner_.erase(in->sequence_id());
      sequence_principal_.erase(in->sequence_id());
    }
    if (!freed.ok()) return ToGrpc(freed.status());
    out->set_blocks_freed(*freed);
    return grpc::Status::OK;
  }

  grpc::Status AppendBlocks(grpc::ServerContext* ctx, const v1::AppendBlocksRequest* in,
                            v1::AppendBlocksResponse* out) override {
    if (grpc::Status s = AdmitFor(*ctx, in->sequence_id()); !s.ok()) return s;
    auto keys = RangesToKeys(in->blocks());
    if (!keys.ok()) return ToGrpc(keys.status());
    auto slots = in->data().empty() ? store().AllocateBlocks(in->sequence_id(), *keys)
                                    : store().WriteBlocks(in->sequence_id(), *keys, in->data());
    if (!slots.ok()) return ToGrpc(slots.status());
    out->mutable_slots()->Add(slots->begin(), slots->end());
    return grpc::Status::OK;
  }

  grpc::Status LookupSlots(grpc::ServerContext* ctx, const v1::LookupSlotsRequest* in,
                           v1::LookupSlotsResponse* out) override {
    if (grpc::Status s = AdmitFor(*ctx, in->sequence_id()); !s.ok()) return s;
    auto keys = RangesToKeys(in->blocks());
    if (!keys.ok()) return ToGrpc(keys.status());
    auto slots = store().LookupSlots(in->sequence_id(), *keys);
    if (!slots.ok()) return ToGrpc(slots.status());
    out->mutable_slots()->Add(slots->begin(), slots->end());
    return grpc::Status::OK;
  }

  grpc::Status GetBlockTable(grpc::ServerContext* ctx, const v1::GetBlockTableRequest* in,
                             v1::GetBlockTableResponse* out) override {
    if (grpc::Status s = AdmitFor(*ctx, in->sequence_id()); !s.ok()) return s;
    auto slots = store().BlockTable(in->sequence_id(), in->layer(), in->kv_head());
    if (!slots.ok()) return ToGrpc(slots.status());
    out->mutable_slots()->Add(slots->begin(), slots->end());
    return grpc::Status::OK;
  }

  grpc::Status ReadBlocks(grpc::ServerContext* ctx, const v1::ReadBlocksRequest* in,
                          v1::ReadBlocksResponse* out) override {
    if (grpc::Status s = AdmitFor(*ctx, in->sequence_id()); !s.ok()) return s;
    auto keys = RangesToKeys(in->blocks());
    if (!keys.ok()) return ToGrpc(keys.status());
    if (static_cast<int64_t>(keys->size()) * store().block_bytes() > kMaxMessageBytes) {
      return ToGrpc(absl::InvalidArgumentError(
          absl::StrCat("ReadBlocks of ", keys->size(), " blocks exceeds the ", kMaxMessageBytes,
                       "-byte message limit; read fewer blocks per request")));
    }
    auto data = store().ReadBlocks(in->sequence_id(), *keys);
    if (!data.ok()) return ToGrpc(data.status());
    *out->mutable_data() = *std::move(data);
    return grpc::Status::OK;
  }

  grpc::Status Stats(grpc::ServerContext* ctx, const v1::StatsRequest*,
                     v1::StatsResponse* out) override {
    Caller caller;
    if (grpc::Status s = Admit(*ctx, &caller); !s.ok()) return s;
    const BlockStoreStats s = store().stats();
    out->set_block_bytes(s.block_bytes);
    out->set_capacity_blocks(s.capacity_blocks);
    out->set_used_blocks(s.used_blocks);
    out->set_free_blocks(s.free_blocks);
    out->set_sequences(s.sequences);
    out->set_blocks_allocated_total(s.blocks_allocated_total);
    out->set_blocks_freed_total(s.blocks_freed_total);
    out->set_allocation_failures(s.allocation_failures);
    out->set_blocks_written_inline(s.blocks_written_inline);
    out->set_blocks_read_inline(s.blocks_read_inline);
    out->set_slots_looked_up(s.slots_looked_up);
    out->set_rpcs_served(rpcs_served());
    return grpc::Status::OK;
  }

 private:
  BlockStore& store() { return *node_.store_; }
  grpc::Status Unauthenticated(absl::string_view why) const {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        absl::StrCat("storage node ", node_.node_name_, ": ", why,
                                     "; every call needs the metadata 'authorization: Bearer "
                                     "<token>' with the token of the node's --auth_token_file"));
  }

  // Counts the call, checks its token, names its principal and renews its owner's lease
  // (only once authenticated: a stranger cannot keep a dead owner's sequences alive).
  grpc::Status Admit(const grpc::ServerContext& ctx, Caller* caller) {
    rpcs_.fetch_add(1, std::memory_order_relaxed);
    const auto& md = ctx.client_metadata();
    if (!token_.empty()) {
      auto it = md.find(kAuthorizationMetadata);
      if (it == md.end()) return Unauthenticated("the call carries no bearer token");
      absl::string_view value(it->second.data(), it->second.size());
      if (!absl::ConsumePrefix(&value, kBearerPrefix) || !ConstantTimeEquals(value, token_)) {
        return Unauthenticated("the call's bearer token is wrong");
      }
    }
    caller->owner = OwnerOf(md);
    if (mtls_) {
      const std::string identity = PeerCertificateIdentity(ctx);
      if (identity.empty()) {
        return Unauthenticated("the client certificate names no identity (CN or SAN)");
      }
      caller->principal = "cert:" + identity;
    } else if (!token_.empty()) {
      // One shared token: the owner id is what tells its holders apart.
      caller->principal = absl::StrCat("token:", caller->owner);
    }
    if (caller->owner != 0) {
      absl::MutexLock l(&lease_mu_);
      owner_seen_[caller->owner] = absl::Now();
    }
    return grpc::Status::OK;
  }

  // Admit, then PERMISSION_DENIED unless the caller created sequence `seq`.
  grpc::Status AdmitFor(const grpc::ServerContext& ctx, uint64_t seq) {
    Caller caller;
    if (grpc::Status s = Admit(ctx, &caller); !s.ok() || caller.principal.empty()) return s;
    absl::MutexLock l(&lease_mu_);
    auto it = sequence_principal_.find(seq);
    // Every sequence has a principal here, so none means none yet: answered now, an
    // unknown id cannot pass the check and then reach a sequence another client creates.
    if (it == sequence_principal_.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("no sequence ", seq, " on storage node ", node_.node_name_));
    }
    if (it->second == caller.principal) return grpc::Status::OK;
    return grpc::Status(
        grpc::StatusCode::PERMISSION_DENIED,
        absl::StrCat("sequence ", seq, " on storage node ", node_.node_name_,
                     " belongs to another client: a client may read, write and free only "
                     "the sequences it created"));
  }

  StorageNode& node_;
  const v1::DataPlaneInfo data_plane_;
  const std::string token_;
  const bool mtls_;
  std::atomic<int64_t> rpcs_{0};
  absl::Mutex lease_mu_;
  absl::flat_hash_map<uint64_t, absl::Time> owner_seen_ ABSL_GUARDED_BY(lease_mu_);
  absl::flat_hash_map<uint64_t, uint64_t> sequence_owner_ ABSL_GUARDED_BY(lease_mu_);
  // Sequence -> the principal that created it (only when the node checks identities).
  absl::flat_hash_map<uint64_t, std::string> sequence_principal_ ABSL_GUARDED_BY(lease_mu_);
};

std::pair<int64_t, int64_t> StorageNode::Service::ExpireLeases(absl::Time now,
                                                               absl::Duration lease) {
  std::vector<uint64_t> expired;
  {
    absl::MutexLock l(&lease_mu_);
    std::vector<uint64_t> gone;
    for (const auto& [owner, seen] : owner_seen_) {
      if (now - seen > lease) gone.push_back(owner);
    }
    if (gone.empty()) return {0, 0};
    const absl::flat_hash_set<uint64_t> dead(gone.begin(), gone.end());
    for (auto it = sequence_owner_.begin(); it != sequence_owner_.end();) {
      if (dead.contains(it->second)) {
        expired.push_back(it->first);
        sequence_principal_.erase(it->first);
        sequence_owner_.erase(it++);
      } else {
        ++it;
      }
    }
    for (uint64_t o : gone) owner_seen_.erase(o);
  }
  int64_t blocks = 0;
  for (uint64_t seq : expired) {
    auto freed = store().FreeSequence(seq);
    if (freed.ok()) blocks += *freed;
  }
  return {static_cast<int64_t>(expired.size()), blocks};
}

void StorageNode::LeaseLoop() {
  const absl::Duration tick = std::min(lease_ / 4, absl::Seconds(1));
  while (!stopped_.WaitForNotificationWithTimeout(tick)) {
    auto [sequences, blocks] = service_->ExpireLeases(absl::Now(), lease_);
    if (sequences > 0) {
      std::fprintf(stderr,
                   "storage node %s: freed %lld sequences (%lld blocks) whose owner was not "
                   "heard from for %s (lease)\n",
                   node_name_.c_str(), static_cast<long long>(sequences),
                   static_cast<long long>(blocks), absl::FormatDuration(lease_).c_str());
    }
  }
}

absl::StatusOr<std::string> InterfaceWithAddress(const std::string& host) {
  in6_addr want6{};
  in_addr want4{};
  const bool v4 = inet_pton(AF_INET, host.c_str(), &want4) == 1;
  const bool v6 = !v4 && inet_pton(AF_INET6, host.c_str(), &want6) == 1;
  if (!v4 && !v6) {
    return absl::InvalidArgumentError(absl::StrCat(
        "advertise address '", host, "' is not an IPv4 or IPv6 address (give the pod's IP)"));
  }
  if ((v4 && want4.s_addr == htonl(INADDR_ANY)) || (v6 && IN6_IS_ADDR_UNSPECIFIED(&want6))) {
    return absl::InvalidArgumentError(
        absl::StrCat("advertise address ", host,
                     " is a wildcard: workers cannot connect to it; give "
                     "the address they reach this node at (the pod's IP)"));
  }
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return absl::InternalError("getifaddrs failed");
  std::string found, seen;
  for (ifaddrs* a = list; a != nullptr && found.empty(); a = a->ifa_next) {
    if (a->ifa_addr == nullptr) continue;
    char text[INET6_ADDRSTRLEN] = {};
    if (a->ifa_addr->sa_family == AF_INET) {
      const in_addr& got = reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr;
      inet_ntop(AF_INET, &got, text, sizeof text);
      if (v4 && got.s_addr == want4.s_addr) found = a->ifa_name;
    } else if (a->ifa_addr->sa_family == AF_INET6) {
      const in6_addr& got = reinterpret_cast<sockaddr_in6*>(a->ifa_addr)->sin6_addr;
      inet_ntop(AF_INET6, &got, text, sizeof text);
      if (v6 && std::memcmp(&got, &want6, sizeof got) == 0) found = a->ifa_name;
    } else {
      continue;
    }
    absl::StrAppend(&seen, seen.empty() ? "" : ", ", a->ifa_name, " ", text);
  }
  freeifaddrs(list);
  if (found.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "advertise address ", host, " is not an address of this host (interfaces: ", seen, ")"));
  }
  return found;
}

absl::StatusOr<std::unique_ptr<StorageNode>> StorageNode::Start(const StorageNodeOptions& o) {
  // Security first: a node told to check its clients never serves without the check.
  auto credentials = NodeServerCredentials(o.tls);
  if (!credentials.ok()) return credentials.status();
  std::string token;
  if (!o.auth_token_file.empty()) {
    auto t = ReadAuthToken(o.auth_token_file);
    if (!t.ok()) return t.status();
    token = *std::move(t);
  }
  std::unique_ptr<StorageNode> node(new StorageNode());
  node->started_ = absl::Now();
  node->node_name_ = o.node_name;
  node->spin_ = o.progress_spin;
  if (node->node_name_.empty()) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    node->node_name_ = host;
  }
  auto store = BlockStore::Create(o.store);
  if (!store.ok()) return store.status();
  node->store_ = *std::move(store);

  ucx::ContextOptions uo = o.ucx;
  uo.wakeup = true;
  if (!o.advertise_host.empty()) {
    auto device = InterfaceWithAddress(o.advertise_host);
    if (!device.ok()) return device.status();
    if (uo.net_devices.empty()) uo.net_devices = *device;
  }
  node->net_devices_ = uo.net_devices;
  auto context = ucx::Context::Create(uo);
  if (!context.ok()) return context.status();
  node->ucx_context_ = *std::move(context);
  auto worker = ucx::Worker::Create(*node->ucx_context_);
  if (!worker.ok()) return worker.status();
  node->ucx_worker_ = *std::move(worker);
  auto pool =
      ucx::MemoryMap::Map(*node->ucx_context_, node->store_->base(), node->store_->region_bytes());
  if (!pool.ok()) return pool.status();
  node->ucx_pool_ = *std::move(pool);

  v1::DataPlaneInfo info;
  auto address = node->ucx_worker_->Address();
  if (!address.ok()) return address.status();
  auto rkey = node->ucx_pool_->PackRkey();
  if (!rkey.ok()) return rkey.status();
  info.set_ucx_worker_address(*address);
  info.set_ucx_rkey(*rkey);
  info.set_base_address(reinterpret_cast<uintptr_t>(node->store_->base()));
  info.set_region_bytes(node->store_->region_bytes());
  info.set_block_bytes(node->store_->block_bytes());
  info.set_capacity_blocks(node->store_->capacity_blocks());
  info.set_ucx_tls(o.ucx.tls);
  node->progress_ = std::thread([n = node.get()] { n->ProgressLoop(); });

  node->service_ =
      std::make_unique<Service>(*node, std::move(info), std::move(token), o.tls.enabled());
  grpc::ServerBuilder builder;
  builder.AddListeningPort(o.grpc_address, *credentials, &node->grpc_port_);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  builder.RegisterService(node->service_.get());
  node->server_ = builder.BuildAndStart();
  if (node->server_ == nullptr || node->grpc_port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for gRPC on ", o.grpc_address, " (address in use?)"));
  }
  node->lease_ = o.lease;
  if (o.lease > absl::ZeroDuration()) {
    node->leases_ = std::thread([n = node.get()] { n->LeaseLoop(); });
  }
  return node;
}

void StorageNode::ProgressLoop() {
  // Poll while there is traffic, and for `spin` after the last event (a decode step's
  // reads come in bursts); then sleep on the worker's event fd.
  const absl::Duration spin = spin_;
  absl::Time last_event = absl::Now();
  int idle = 0;
  while (!stop_progress_.load(std::memory_order_relaxed)) {
    if (ucx_worker_->Progress() != 0) {
      idle = 0;
      continue;
    }
    if (++idle % 64 != 0) continue;
    const absl::Time now = absl::Now();
    if (idle == 64) last_event = now;
    if (now - last_event < spin) continue;
    ucx_worker_->WaitForEvents(absl::Milliseconds(50));
    idle = 0;
  }
}

void StorageNode::Shutdown() {
  if (shut_down_.exchange(true)) return;
  if (server_ != nullptr) server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  stop_progress_ = true;
  if (progress_.joinable()) progress_.join();
  stopped_.Notify();
  if (leases_.joinable()) leases_.join();
}

void StorageNode::Wait() { stopped_.WaitForNotification(); }

StorageNode::~StorageNode() {
  Shutdown();
  server_.reset();
  service_.reset();
  ucx_pool_.reset();
  ucx_worker_.reset();
  ucx_context_.reset();
  store_.reset();
}

}  // namespace apr::kvstore
