#include "kvstore/client/remote_tier.h"

#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "grpcpp/grpcpp.h"
#include "kvstore/block_range.h"
#include "kvstore/grpc_status.h"

namespace apr::kvstore {
namespace {

constexpr int kMaxMessageBytes = 512 << 20;

// Whether a UCX_TLS list (this side's, else the environment's) names only shared-memory
// and loopback transports.
bool OnlySharedMemory(std::string tls) {
  if (tls.empty()) {
    const char* env = std::getenv("UCX_TLS");
    if (env == nullptr) return false;
    tls = env;
  }
  for (absl::string_view t : absl::StrSplit(tls, ',')) {
    if (!absl::ConsumePrefix(&t, "^") && t != "sm" && t != "shm" && t != "posix" && t != "sysv" &&
        t != "cma" && t != "knem" && t != "xpmem" && t != "self") {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RemoteTier>> RemoteTier::Connect(const RemoteTierOptions& o) {
  std::unique_ptr<RemoteTier> t(new RemoteTier(o));
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  if (!o.tls.server_name.empty()) args.SetSslTargetNameOverride(o.tls.server_name);
  auto credentials = NodeChannelCredentials(o.tls);
  if (!credentials.ok()) return credentials.status();
  if (!o.auth_token_file.empty()) {
    auto token = ReadAuthToken(o.auth_token_file);
    if (!token.ok()) return token.status();
    t->authorization_ = absl::StrCat(kBearerPrefix, *token);
  }
  t->stub_ = v1::KvStore::NewStub(grpc::CreateCustomChannel(o.address, *credentials, args));
  auto health = t->Health();
  if (!health.ok()) return health.status();
  {
    auto ctx = t->NewContext();
    t->CountRpc();
    grpc::Status s = t->stub_->GetDataPlane(ctx.get(), v1::GetDataPlaneRequest(), &t->data_plane_);
    if (!s.ok()) return FromGrpc(s, absl::StrCat("GetDataPlane from storage node ", o.address));
  }
  const v1::DataPlaneInfo& dp = t->data_plane_;
  if (dp.block_bytes() <= 0 || dp.capacity_blocks() <= 0 ||
      dp.region_bytes() < static_cast<uint64_t>(dp.block_bytes() * dp.capacity_blocks())) {
    return absl::InternalError(
        absl::StrCat("storage node ", o.address, " sent an inconsistent data plane description"));
  }
  absl::MutexLock lock(&t->mu_);
  // With no transport list here (option or UCX_TLS), take the node's: its operator chose
  // it for where the node runs. UCX's own default asks for peer-failure detection, which
  // Debian's UCX shared-memory transports lack, so on one host it silently fell back to
  // tcp over loopback (the served REMOTE row ran at 1.9x the in-process one on sm).
  if (t->ucx_options_.tls.empty() && std::getenv("UCX_TLS") == nullptr) {
    t->ucx_options_.tls = dp.ucx_tls();
  }
  auto context = ucx::Context::Create(t->ucx_options_);
  if (!context.ok()) return context.status();
  t->context_ = *std::move(context);
  auto worker = ucx::Worker::Create(*t->context_);
  if (!worker.ok()) return worker.status();
  t->worker_ = *std::move(worker);
  // kAuto: UCX 1.13's shared-memory transports cannot watch a peer; with a transport list
  // of only those, do not ask (UCX would log an error for the attempt).
  const bool want = o.peer_failure == RemoteTierOptions::PeerFailure::kRequire ||
                    (o.peer_failure == RemoteTierOptions::PeerFailure::kAuto &&
                     !OnlySharedMemory(t->ucx_options_.tls));
  auto ep = ucx::Endpoint::Connect(*t->worker_, dp.ucx_worker_address(), dp.ucx_rkey(),
                                   dp.base_address(), dp.region_bytes(), want);
  t->peer_failure_detection_ = want;
  if (!ep.ok() && want && o.peer_failure == RemoteTierOptions::PeerFailure::kAuto) {
    ep = ucx::Endpoint::Connect(*t->worker_, dp.ucx_worker_address(), dp.ucx_rkey(),
                                dp.base_address(), dp.region_bytes(), false);
    t->peer_failure_detection_ = false;
  }
  if (!ep.ok()) {
    return absl::Status(
        ep.status().code(),
        absl::StrCat("storage node ", o.address, " (UCX_TLS '", dp.ucx_tls(), "' there, '",
                     t->ucx_options_.tls, "' here): ", ep.status().message()));
  }
  t->endpoint_ = *std::move(ep);
  if (o.background_progress) t->progress_ = std::thread([p = t.get()] { p->ProgressLoop(); });
  if (o.lease_renewal > absl::ZeroDuration()) {
    t->renewal_ = std::thread([p = t.get()] { p->RenewLoop(); });
  }
  return t;
}

RemoteTier::RemoteTier(const RemoteTierOptions& o)
    : options_(o), ucx_options_(o.ucx), owner_([] {
        std::random_device r;
        return ((uint64_t{r()} << 32) ^ uint64_t{r()}) | 1;  // never 0 (0: no owner)
      }()) {}

void RemoteTier::RenewLoop() {
  // Not counted in stats().rpcs: callers count their own calls.
  while (!stop_renewal_.WaitForNotificationWithTimeout(options_.lease_renewal)) {
    auto ctx = NewContext();
    v1::HealthResponse out;
    stub_->Health(ctx.get(), v1::HealthRequest(), &out).ok();  // a miss: the next one renews
  }
}

bool RemoteTier::ReadsInFlight() const {
  for (const auto& [id, batch] : reads_) {
    if (!batch->done()) return true;
  }
  return false;
}

void RemoteTier::ProgressLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](RemoteTier* t) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return t->stop_progress_ || (t->endpoint_->failed() == UCS_OK && t->ReadsInFlight());
          },
          this));
      if (stop_progress_) return;
      worker_->Progress();
    }
    sched_yield();  // let the caller's thread take the lock between rounds
  }
}

RemoteTier::~RemoteTier() {
  stop_renewal_.Notify();
  if (renewal_.joinable()) renewal_.join();
  if (progress_.joinable()) {
    {
      absl::MutexLock lock(&mu_);
      stop_progress_ = true;
    }
    progress_.join();
  }
  absl::MutexLock lock(&mu_);
  // Operations still in flight complete (cancelled) when the endpoint closes or, for a
  // failed endpoint, only when the worker is destroyed: their batches go after both.
  endpoint_.reset();
  worker_.reset();
  reads_.clear();
  graveyard_.clear();
  staging_.clear();
  context_.reset();
}

std::unique_ptr<grpc::ClientContext> RemoteTier::NewContext() const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_timeout));
  ctx->AddMetadata(kOwnerMetadata, absl::StrCat(owner_));
  if (!authorization_.empty()) ctx->AddMetadata(kAuthorizationMetadata, authorization_);
  return ctx;
}

std::vector<NodeTraffic> RemoteTier::node_traffic() const { return {{options_.address, stats()}}; }

std::string RemoteTier::description() const {
  return absl::StrCat("storage node ", options_.address, " (UCX_TLS '", ucx_options_.tls, "')");
}

absl::StatusOr<v1::HealthResponse> RemoteTier::Health() {
  auto ctx = NewContext();
  CountRpc();
  v1::HealthResponse out;
  grpc::Status s = stub_->Health(ctx.get(), v1::HealthRequest(), &out);
  // A node that answers but refuses this client is not unreachable: say why instead.
  if (s.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
      s.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
    return FromGrpc(s, absl::StrCat("Health of storage node ", options_.address));
  }
  if (!s.ok()) {
    return absl::UnavailableError(absl::StrCat("storage node ", options_.address,
                                               " is unreachable: gRPC ", s.error_code(), " ",
                                               s.error_message()));
  }
  return out;
}

absl::Status RemoteTier::Explain(const absl::Status& s, const std::string& what) {
  auto health = Health();
  if (!health.ok()) {
    return absl::UnavailableError(
        absl::StrCat(what, ": ", health.status().message(), " (data plane: ", s.message(), ")"));
  }
  return absl::Status(s.code(), absl::StrCat(what, " from ", description(), ": ", s.message(),
                                             " (the node still answers its control plane)"));
}

absl::Status RemoteTier::CreateSequence(uint64_t seq, int32_t num_layers, int32_t num_kv_heads) {
  v1::CreateSequenceRequest req;
  req.set_sequence_id(seq);
  req.set_num_layers(num_layers);
  req.set_num_kv_heads(num_kv_heads);
  v1::CreateSequenceResponse resp;
  auto ctx = NewContext();
  CountRpc();
  return FromGrpc(stub_->CreateSequence(ctx.get(), req, &resp),
                  absl::StrCat("CreateSequence on storage node ", options_.address));
}

absl::StatusOr<int64_t> RemoteTier::FreeSequence(uint64_t seq) {
  v1::FreeSequenceRequest req;
  req.set_sequence_id(seq);
  v1::FreeSequenceResponse resp;
  auto ctx = NewContext();
  CountRpc();
  grpc::Status s = stub_->FreeSequence(ctx.get(), req, &resp);
  if (!s.ok()) return FromGrpc(s, absl::StrCat("FreeSequence on storage node ", options_.address));
  return resp.blocks_freed();
}

absl::StatusOr<std::vector<uint32_t>> RemoteTier::WriteBlocks(
    uint64_t seq, absl::Span<const BlockKey> keys, absl::Span<const std::byte* const> data) {
  if (keys.size() != data.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(keys.size(), " blocks but ", data.size(), " data pointers"));
  }
  if (keys.empty()) return std::vector<uint32_t>();
  const int64_t bb = block_bytes();
  v1::AppendBlocksRequest req;
  req.set_sequence_id(seq);
  KeysToRanges(keys, req.mutable_blocks());
  const bool inline_data = options_.write_path == RemoteTierOptions::WritePath::kInline;
  if (inline_data) {
    std::string* d = req.mutable_data();
    d->reserve(keys.size() * bb);
    for (const std::byte* p : data) d->append(reinterpret_cast<const char*>(p), bb);
  }
  v1::AppendBlocksResponse resp;
  auto ctx = NewContext();
  CountRpc();
  grpc::Status s = stub_->AppendBlocks(ctx.get(), req, &resp);
  if (!s.ok()) return FromGrpc(s, absl::StrCat("AppendBlocks on storage node ", options_.address));
  if (resp.slots_size() != static_cast<int>(keys.size())) {
    return absl::InternalError(absl::StrCat("storage node ", options_.address, " returned ",
                                            resp.slots_size(), " slots for ", keys.size(),
                                            " blocks"));
  }
  std::vector<uint32_t> slots(resp.slots().begin(), resp.slots().end());
  absl::Status put_status;
  {
    absl::MutexLock lock(&mu_);
    if (!inline_data) {
      auto batch = std::make_unique<ucx::OpBatch>();
      size_t i = 0;
      while (i < slots.size() && put_status.ok()) {
        // Coalesce runs that are consecutive on both sides.
        size_t j = i + 1;
        while (j < slots.size() && slots[j] == slots[j - 1] + 1 && data[j] == data[j - 1] + bb) ++j;
        const size_t n = (j - i) * bb;
        put_status = endpoint_->Put(data[i], n, uint64_t{slots[i]} * bb, StagingHandle(data[i], n),
                                    batch.get());
        ++stats_.data_ops;
        i = j;
      }
      if (put_status.ok()) put_status = endpoint_->Flush(batch.get());
      if (put_status.ok()) put_status = WaitBatch(batch.get());
      if (!batch->done()) Bury(std::move(batch));
    }
    if (put_status.ok()) {
      stats_.blocks_written += static_cast<int64_t>(keys.size());
      stats_.bytes_written += static_cast<int64_t>(keys.size()) * bb;
    }
  }
  if (!put_status.ok()) return Explain(put_status, "writing blocks");
  return slots;
}

absl::StatusOr<std::vector<uint32_t>> RemoteTier::AllocateBlocks(uint64_t seq,
                                                                 absl::Span<const BlockKey> keys) {
  if (keys.empty()) return std::vector<uint32_t>();
  v1::AppendBlocksRequest req;
  req.set_sequence_id(seq);
  KeysToRanges(keys, req.mutable_blocks());
  v1::AppendBlocksResponse resp;
  auto ctx = NewContext();
  CountRpc();
  grpc::Status s = stub_->AppendBlocks(ctx.get(), req, &resp);
  if (!s.ok()) return FromGrpc(s, absl::StrCat("AppendBlocks on storage node ", options_.address));
  if (resp.slots_size() != static_cast<int>(keys.size())) {
    return absl::InternalError(absl::StrCat("storage node ", options_.address, " returned ",
                                            resp.slots_size(), " slots for ", keys.size(),
                                            " blocks"));
  }
  return std::vector<uint32_t>(resp.slots().begin(), resp.slots().end());
}

absl::StatusOr<std::vector<uint32_t>> RemoteTier::LookupSlots(uint64_t seq,
                                                              absl::Span<const BlockKey> keys) {
  v1::LookupSlotsRequest req;
  req.set_sequence_id(seq);
  KeysToRanges(keys, req.mutable_blocks());
  v1::LookupSlotsResponse resp;
  auto ctx = NewContext();
  CountRpc();
  grpc::Status s = stub_->LookupSlots(ctx.get(), req, &resp);
  if (!s.ok()) return FromGrpc(s, absl::StrCat("LookupSlots on storage node ", options_.address));
  return std::vector<uint32_t>(resp.slots().begin(), resp.slots().end());
}

absl::Status RemoteTier::RegisterStaging(void* address, size_t length) {
  absl::MutexLock lock(&mu_);
  auto map = ucx::MemoryMap::Map(*context_, address, length);
  if (!map.ok()) return map.status();
  staging_.push_back(*std::move(map));
  return absl::OkStatus();
}

void RemoteTier::UnregisterStaging(void* address) {
  absl::MutexLock lock(&mu_);
  staging_.erase(std::remove_if(staging_.begin(), staging_.end(),
                                [&](const auto& m) { return m->address() == address; }),
                 staging_.end());
}

ucp_mem_h RemoteTier::StagingHandle(const void* p, size_t n) const {
  const auto* b = static_cast<const std::byte*>(p);
  for (const auto& m : staging_) {
    const auto* base = static_cast<const std::byte*>(m->address());
    if (b >= base && b + n <= base + m->length()) return m->handle();
  }
  return nullptr;
}

void RemoteTier::Bury(std::unique_ptr<ucx::OpBatch> batch) {
  graveyard_.push_back(std::move(batch));
}

absl::StatusOr<ReadId> RemoteTier::StartRead(absl::Span<const uint32_t> slots,
                                             absl::Span<std::byte* const> dst) {
  if (slots.size() != dst.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(slots.size(), " slots but ", dst.size(), " destinations"));
  }
  const int64_t bb = block_bytes();
  for (uint32_t s : slots) {
    if (s >= data_plane_.capacity_blocks()) {
      return absl::OutOfRangeError(absl::StrCat("slot ", s, " is beyond the ",
                                                data_plane_.capacity_blocks(), " blocks of ",
                                                description()));
    }
  }
  absl::Status status;
  ReadId id = 0;
  {
    absl::MutexLock lock(&mu_);
    auto batch = std::make_unique<ucx::OpBatch>();
    size_t i = 0;
    while (i < slots.size() && status.ok()) {
      size_t j = i + 1;
      while (j < slots.size() && slots[j] == slots[j - 1] + 1 && dst[j] == dst[j - 1] + bb) ++j;
      const size_t n = (j - i) * bb;
      status =
          endpoint_->Get(dst[i], n, uint64_t{slots[i]} * bb, StagingHandle(dst[i], n), batch.get());
      ++stats_.data_ops;
      i = j;
    }
    if (!status.ok()) {
      if (!batch->done()) Bury(std::move(batch));
    } else {
      id = next_id_++;
      reads_.emplace(id, std::move(batch));
      ++stats_.reads;
      stats_.blocks_read += static_cast<int64_t>(slots.size());
      stats_.bytes_read += static_cast<int64_t>(slots.size()) * bb;
    }
  }
  if (!status.ok()) return Explain(status, "reading blocks");
  return id;
}

bool RemoteTier::ReadDone(ReadId id) {
  absl::MutexLock lock(&mu_);
  auto it = reads_.find(id);
  if (it == reads_.end()) return true;
  worker_->Progress();
  return it->second->done() || endpoint_->failed() != UCS_OK;
}

absl::Status RemoteTier::WaitRead(ReadId id) {
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    auto it = reads_.find(id);
    if (it == reads_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("no read ", id, " in flight"));
    }
    std::unique_ptr<ucx::OpBatch> batch = std::move(it->second);
    reads_.erase(it);
    ++stats_.waits;
    const absl::Time start = absl::Now();
    if (!batch->done()) ++stats_.waits_blocked;
    status = WaitBatch(batch.get());
    stats_.wait_seconds += absl::ToDoubleSeconds(absl::Now() - start);
    if (!batch->done()) Bury(std::move(batch));
  }
  if (!status.ok()) return Explain(status, "reading blocks");
  return absl::OkStatus();
}

absl::StatusOr<BlockStoreStats> RemoteTier::NodeStats() {
  v1::StatsResponse r;
  auto ctx = NewContext();
  CountRpc();
  grpc::Status s = stub_->Stats(ctx.get(), v1::StatsRequest(), &r);
  if (!s.ok()) return FromGrpc(s, absl::StrCat("Stats from storage node ", options_.address));
  BlockStoreStats out;
  out.block_bytes = r.block_bytes();
  out.capacity_blocks = r.capacity_blocks();
  out.used_blocks = r.used_blocks();
  out.free_blocks = r.free_blocks();
  out.sequences = r.sequences();
  out.blocks_allocated_total = r.blocks_allocated_total();
  out.blocks_freed_total = r.blocks_freed_total();
  out.allocation_failures = r.allocation_failures();
  out.blocks_written_inline = r.blocks_written_inline();
  out.blocks_read_inline = r.blocks_read_inline();
  out.slots_looked_up = r.slots_looked_up();
  return out;
}

TierClientStats RemoteTier::stats() const {
  absl::MutexLock lock(&mu_);
  TierClientStats s = stats_;
  s.rpcs = rpcs_.load(std::memory_order_relaxed);
  return s;
}

absl::Status RemoteTier::WaitBatch(ucx::OpBatch* batch) {
  if (peer_failure_detection_) return endpoint_->Wait(batch, options_.data_timeout);
  const absl::Time deadline = absl::Now() + options_.data_timeout;
  for (;;) {
    const absl::Duration left = deadline - absl::Now();
    absl::Status s = endpoint_->Wait(batch, std::min(left, absl::Milliseconds(500)));
    if (s.code() != absl::StatusCode::kDeadlineExceeded || left <= absl::Milliseconds(500)) {
      return s;
    }
    auto health = Health();
    if (!health.ok()) {
      return absl::UnavailableError(
          absl::StrCat("UCX operations to the storage node are still outstanding after ",
                       absl::FormatDuration(absl::Now() - (deadline - options_.data_timeout)),
                       " and the node fails its Health check"));
    }
  }
}

}  // namespace apr::kvstore
