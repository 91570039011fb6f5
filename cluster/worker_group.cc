#include "cluster/worker_group.h"

#include <grpcpp/grpcpp.h>

#include <future>
#include <limits>
#include <thread>

#include "absl/strings/str_cat.h"
#include "cluster/worker_service.h"

namespace apr::cluster {

namespace wv1 = ::apr::worker::v1;

namespace {

// Generous: a long prompt's prefill on the CPU takes a while; a dead worker fails fast
// (UNAVAILABLE) rather than by deadline.
constexpr auto kCallDeadline = std::chrono::minutes(10);

void SetDeadline(grpc::ClientContext& ctx) {
  ctx.set_deadline(std::chrono::system_clock::now() + kCallDeadline);
}

}  // namespace

WorkerGroup::WorkerGroup(std::string name, std::vector<RankAddress> ranks, const TlsConfig& tls)
    : name_(std::move(name)), ranks_(std::move(ranks)) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(std::numeric_limits<int>::max());
  for (const RankAddress& r : ranks_) {
    auto channel = MakeChannel(r.address, tls, args);
    if (!channel.ok()) {  // unreadable certificate files: every call fails with the reason
      MarkUnhealthy(channel.status());
      channel = grpc::CreateCustomChannel(r.address, grpc::InsecureChannelCredentials(), args);
    }
    stubs_.push_back(wv1::Worker::NewStub(*channel));
  }
}

std::string WorkerGroup::unhealthy_reason() const {
  absl::MutexLock l(&mu_);
  return unhealthy_reason_;
}

void WorkerGroup::MarkUnhealthy(const absl::Status& s) {
  absl::MutexLock l(&mu_);
  if (unhealthy_reason_.empty()) unhealthy_reason_ = std::string(s.message());
  healthy_ = false;
}

absl::Status WorkerGroup::Probe(absl::Duration timeout) {
  const auto deadline = std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout);
  auto health = [&](int r) {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline);
    wv1::HealthResponse resp;
    grpc::Status st = stubs_[r]->Health(&ctx, wv1::HealthRequest(), &resp);
    if (st.ok() && !resp.model_loaded()) {
      // A worker that answers but has no model was restarted: its sequences are gone.
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the worker has no model loaded "
                                                         "(restarted?)");
    }
    if (!st.ok() && st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          absl::StrCat("no Health answer within ", absl::FormatDuration(timeout)));
    }
    return st;
  };
  absl::Status s = OnAllRanks(health, /*probe_on_failure=*/false);
  if (!s.ok()) MarkUnhealthy(s);
  return s;
}

absl::Status WorkerGroup::OnAllRanks(const std::function<grpc::Status(int rank)>& call,
                                     bool probe_on_failure) {
  std::vector<std::future<grpc::Status>> others;
  for (int r = 1; r < static_cast<int>(stubs_.size()); ++r) {
    others.push_back(std::async(std::launch::async, call, r));
  }
  grpc::Status first = call(0);
  absl::Status result = FromGrpc(first);
  for (size_t i = 0; i < others.size(); ++i) {
    grpc::Status s = others[i].get();
    if (result.ok() && !s.ok()) {
      result = absl::Status(FromGrpc(s).code(),
                            absl::StrCat("worker ", name_, "/", i + 1, " (", ranks_[i + 1].address,
                                         "): ", s.error_message()));
    }
  }
  if (!first.ok()) {
    result = absl::Status(result.code(), absl::StrCat("worker ", name_, "/0 (", ranks_[0].address,
                                                      "): ", result.message()));
  }
  // UNAVAILABLE is the transport's word for a process that is gone or unreachable, but a
  // live worker also answers it (its storage node is gone): a Health probe tells which.
  if (result.code() == absl::StatusCode::kUnavailable && probe_on_failure) {
    if (absl::Status p = Probe(absl::Seconds(2)); !p.ok()) {
      result = absl::Status(result.code(), absl::StrCat(result.message(), " [", p.message(), "]"));
    }
  }
  return result;
}

absl::Status WorkerGroup::Load(const std::string& model_path, int max_sequences,
                               const wv1::KvCache& kv_cache, absl::Duration timeout) {
  const auto deadline = std::chrono::system_clock::now() + absl::ToChronoSeconds(timeout);
  // Wait for every rank to answer Health (the launcher starts workers first, but under
  // Kubernetes the pods come up in any order).
  absl::Status ready = OnAllRanks([&](int r) {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline);
    ctx.set_wait_for_ready(true);
    wv1::HealthResponse resp;
    return stubs_[r]->Health(&ctx, wv1::HealthRequest(), &resp);
  });
  if (!ready.ok()) return ready;

  const int world = static_cast<int>(ranks_.size());
  std::string nccl_id;
  if (world > 1) {
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    wv1::CreateNcclUniqueIdRequest req;
    req.set_world_size(world);
    wv1::CreateNcclUniqueIdResponse resp;
    grpc::Status s = stubs_[0]->CreateNcclUniqueId(&ctx, req, &resp);
    if (!s.ok()) {
      return absl::Status(FromGrpc(s).code(),
                          absl::StrCat("worker ", name_, "/0: ", s.error_message()));
    }
    nccl_id = resp.nccl_unique_id();
  }
  std::vector<wv1::LoadModelResponse> loaded(ranks_.size());
  absl::Status s = OnAllRanks([&](int r) {
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    wv1::LoadModelRequest req;
    req.set_model_path(model_path);
    req.set_device(ranks_[r].device);
    req.set_max_sequences(max_sequences);
    *req.mutable_kv_cache() = kv_cache;
    req.mutable_tensor_parallel()->set_rank(r);
    req.mutable_tensor_parallel()->set_world_size(world);
    req.mutable_tensor_parallel()->set_nccl_unique_id(nccl_id);
    return stubs_[r]->LoadModel(&ctx, req, &loaded[r]);
  });
  if (!s.ok()) return s;
  loaded_devices_.clear();
  for (const auto& l : loaded) loaded_devices_.push_back(l.device());
  max_context_ = loaded[0].max_context();
  vocab_size_ = loaded[0].vocab_size();
  return absl::OkStatus();
}

absl::StatusOr<int32_t> WorkerGroup::StartPart(uint64_t id, absl::Span<const int32_t> tokens,
                                               const SamplingParams& sampling, PromptPart part) {
  wv1::StartSequenceRequest req;
  req.set_sequence_id(id);
  req.mutable_prompt_ids()->Add(tokens.begin(), tokens.end());
  req.set_continues_prompt(!part.first);
  req.set_more_prompt(!part.last);
  req.mutable_sampling()->set_temperature(sampling.temperature);
  req.mutable_sampling()->set_top_k(sampling.top_k);
  req.mutable_sampling()->set_top_p(sampling.top_p);
  req.mutable_sampling()->set_seed(sampling.seed);
  wv1::StartSequenceResponse rank0;
  absl::Status s = OnAllRanks([&](int r) {
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    wv1::StartSequenceResponse resp;
    grpc::Status st = stubs_[r]->StartSequence(&ctx, req, &resp);
    if (r == 0) rank0 = resp;
    return st;
  });
  if (!s.ok()) return s;
  return rank0.token();
}

absl::StatusOr<std::vector<int32_t>> WorkerGroup::Step(absl::Span<const uint64_t> ids,
                                                       absl::Span<const int32_t> tokens) {
  wv1::StepRequest req;
  req.mutable_sequence_ids()->Add(ids.begin(), ids.end());
  req.mutable_tokens()->Add(tokens.begin(), tokens.end());
  wv1::StepResponse rank0;
  absl::Status s = OnAllRanks([&](int r) {
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    wv1::StepResponse resp;
    grpc::Status st = stubs_[r]->Step(&ctx, req, &resp);
    if (r == 0) rank0 = resp;
    return st;
  });
  if (!s.ok()) return s;
  return std::vector<int32_t>(rank0.tokens().begin(), rank0.tokens().end());
}

void WorkerGroup::Free(absl::Span<const uint64_t> ids) {
  wv1::FreeSequencesRequest req;
  req.mutable_sequence_ids()->Add(ids.begin(), ids.end());
  // Best effort: a worker that cannot be reached has lost its sequences anyway.
  OnAllRanks([&](int r) {
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    wv1::FreeSequencesResponse resp;
    return stubs_[r]->FreeSequences(&ctx, req, &resp);
  }).IgnoreError();
}

}  // namespace apr::cluster
