#include "cluster/generation_service.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "cluster/kv_cache_request.h"
#include "cluster/request_validation.h"
#include "cluster/worker_service.h"
#include "runtime/model_path.h"

namespace apr::cluster {

namespace gv1 = ::apr::generation::v1;

namespace {

gv1::StopReason ToProto(StopReason r) {
  switch (r) {
    case StopReason::kMaxTokens:
      return gv1::STOP_REASON_MAX_TOKENS;
    case StopReason::kStopToken:
      return gv1::STOP_REASON_STOP_TOKEN;
    case StopReason::kContextFull:
      return gv1::STOP_REASON_CONTEXT_FULL;
    case StopReason::kCancelled:
      return gv1::STOP_REASON_CANCELLED;
  }
  return gv1::STOP_REASON_UNSPECIFIED;
}

// Tokens travel from the scheduler's thread to the RPC's thread through this; shared, so
// that a client that goes away early leaves it to the scheduler's last callback.
struct Stream {
  absl::Mutex mu;
  std::vector<int32_t> pending ABSL_GUARDED_BY(mu);
  bool done ABSL_GUARDED_BY(mu) = false;
  absl::StatusOr<ScheduledResult> result ABSL_GUARDED_BY(mu) = absl::UnknownError("running");
};

// A stream that the request's callbacks fill from the scheduler's thread.
std::shared_ptr<Stream> AttachStream(SchedulerRequest& request) {
  auto stream = std::make_shared<Stream>();
  request.on_token = [stream](int32_t token) {
    absl::MutexLock l(&stream->mu);
    stream->pending.push_back(token);
    return true;
  };
  request.on_done = [stream](absl::StatusOr<ScheduledResult> result) {
    absl::MutexLock l(&stream->mu);
    stream->result = std::move(result);
    stream->done = true;
  };
  return stream;
}

// Streams the request's tokens to the client as the scheduler produces them, until it is
// done: OK, or CANCELLED (the request cancelled in the scheduler) when the client cancels
// or goes away.
grpc::Status RelayTokens(grpc::ServerContext& ctx, Stream& stream, Scheduler& scheduler,
                         uint64_t id, std::chrono::steady_clock::time_point arrived,
                         StreamDecoder& text, grpc::ServerWriter<gv1::GenerateResponse>* writer,
                         Histogram* first_token_seconds, Counter* tokens) {
  bool first = true;
  while (true) {
    std::vector<int32_t> ids;
    bool done = false;
    {
      absl::MutexLock l(&stream.mu);
      auto ready = [&stream]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(stream.mu) {
        return stream.done || !stream.pending.empty();
      };
      // Wake now and then to notice a client that went away without a write failing.
      stream.mu.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(200));
      ids.swap(stream.pending);
      done = stream.done;
    }
    if (ctx.IsCancelled()) {
      scheduler.Cancel(id);
      return grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled");
    }
    if (!ids.empty()) {
      if (first) {
        first_token_seconds->Observe(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - arrived).count());
        first = false;
      }
      tokens->Add(static_cast<double>(ids.size()));
      gv1::GenerateResponse chunk;
      std::string piece;
      for (int32_t t : ids) {
        chunk.mutable_tokens()->add_ids(t);
        piece += text.Push(t);
      }
      chunk.mutable_tokens()->set_text(piece);
      if (!writer->Write(chunk)) {
        scheduler.Cancel(id);
        return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
      }
    }
    if (done) return grpc::Status::OK;
  }
}

// The stream's last message: the request's figures and where it ran.
gv1::GenerateResponse FinalStats(const ScheduledResult& result, const std::string& request_id,
                                 const WorkerGroup& workers) {
  gv1::GenerateResponse last;
  gv1::GenerationStats* st = last.mutable_stats();
  st->set_request_id(request_id);
  st->set_prompt_tokens(result.generation.prompt_tokens);
  st->set_generated_tokens(static_cast<int64_t>(result.generation.tokens.size()));
  st->set_stop_reason(ToProto(result.generation.stop));
  st->set_queue_seconds(result.queue_seconds);
  st->set_prefill_seconds(result.generation.prefill_seconds);
  st->set_decode_seconds(result.generation.decode_seconds);
  st->set_worker_group(workers.name());
  st->set_device(workers.loaded_devices().empty() ? "" : workers.loaded_devices()[0]);
  return last;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GenerationService>> GenerationService::Create(
    const ClusterConfig& config, const std::string& model_dir, MetricsRegistry* metrics) {
  auto model = LoadModelConfig(model_dir + "/config.json");
  if (!model.ok()) return model.status();
  auto tokenizer = Tokenizer::FromFile(model_dir + "/tokenizer.json");
  if (!tokenizer.ok()) return tokenizer.status();
  std::optional<TokenSet> tokens;
  if (config.frontend().has_auth()) {
    auto t = TokenSet::Load(ResolveModelDir(config.frontend().auth().tokens_file()));
    if (!t.ok()) return t.status();
    tokens = *std::move(t);
  }
  std::unique_ptr<GenerationService> service(
      new GenerationService(config, model_dir, std::move(*tokenizer), *model, metrics));
  service->tokens_file_ = std::move(tokens);
  return service;
}

GenerationService::GenerationService(const ClusterConfig& config, std::string model_dir,
                                     std::unique_ptr<Tokenizer> tokenizer, ModelConfig model,
                                     MetricsRegistry* metrics)
    : config_(config),
      model_dir_(std::move(model_dir)),
      tokenizer_(std::move(tokenizer)),
      model_(std::move(model)),
      status_(gv1::HealthResponse::STATUS_STARTING),
      status_message_("loading the workers") {
  for (const auto& g : config_.worker_groups()) {
    std::vector<RankAddress> ranks;
    for (const auto& r : g.ranks()) {
      ranks.push_back({HostPort(r.grpc().host(), r.grpc().port()), r.device()});
    }
    groups_.push_back({std::make_unique<WorkerGroup>(g.name(), std::move(ranks),
                                                     ResolveTlsPaths(config_.internal_tls())),
                       nullptr});
  }
  // Schedulers exist from the start (so that metrics and Health read them without a
  // race) and start running once their group is loaded.
  SchedulerOptions options;
  options.max_batch_size = config_.scheduler().max_batch_size();
  options.max_queue_size = config_.scheduler().max_queue_size();
  options.prefill_chunk_tokens = std::max(config_.scheduler().prefill_chunk_tokens(), 0);
  options.max_prefill_share = config_.scheduler().max_prefill_share();
  for (Group& g : groups_) {
    g.scheduler = std::make_unique<Scheduler>(*g.workers, options);
    g.scheduler->set_step_observer([this](int batch, double seconds) {
      step_seconds_->Observe(seconds);
      if (seconds > 0) tokens_per_second_->Set(batch / seconds);
    });
  }
  requests_ = metrics->AddCounter("apr_requests_total", "Generate requests admitted.");
  request_errors_ = metrics->AddCounter("apr_request_errors_total",
                                        "Generate requests that ended with an error.");
  tokens_ =
      metrics->AddCounter("apr_tokens_generated_total", "Tokens generated over all requests.");
  step_seconds_ = metrics->AddHistogram(
      "apr_decode_step_seconds",
      "Seconds per decode step of a worker group, as the front end sees it (RPC included).",
      ExponentialBuckets(0.0005, 2, 16));
  tokens_per_second_ = metrics->AddGauge(
      "apr_decode_tokens_per_second", "Tokens per second of the last decode step (batch / time).");
  queue_seconds_ = metrics->AddHistogram("apr_queue_wait_seconds",
                                         "Seconds from arrival to admission into the batch.",
                                         ExponentialBuckets(0.001, 2, 16));
  first_token_seconds_ = metrics->AddHistogram("apr_time_to_first_token_seconds",
                                               "Seconds from arrival to the first token.",
                                               ExponentialBuckets(0.001, 2, 16));
  metrics->AddGaugeFunction("apr_queue_depth", "Requests waiting for admission.", [this] {
    int64_t n = 0;
    for (const Group& g : groups_) n += g.scheduler->stats().queue_depth;
    return static_cast<double>(n);
  });
  refused_ = metrics->AddCounter(
      "apr_requests_refused_total",
      "Generate requests refused by a limit (frontend.limits, the admission queue).");
  unauthenticated_ = metrics->AddCounter("apr_requests_unauthenticated_total",
                                         "Calls refused for a missing or unknown token.");
  metrics->AddGaugeFunction("apr_unhealthy_worker_groups",
                            "Worker groups whose workers failed or stopped answering.", [this] {
                              int n = 0;
                              for (const Group& g : groups_) n += g.workers->healthy() ? 0 : 1;
                              return static_cast<double>(n);
                            });
  metrics->AddGaugeFunction("apr_open_streams", "Generate streams open.", [this] {
    absl::MutexLock l(&streams_mu_);
    return static_cast<double>(open_streams_);
  });
  metrics->AddGaugeFunction("apr_running_sequences", "Sequences in the running batches.", [this] {
    int64_t n = 0;
    for (const Group& g : groups_) n += g.scheduler->stats().running;
    return static_cast<double>(n);
  });
}

GenerationService::~GenerationService() { Stop(); }

absl::Status GenerationService::LoadWorkers(absl::Duration probe_interval) {
  const absl::Duration timeout = absl::Seconds(config_.launcher().startup_timeout_seconds());
  ::apr::worker::v1::KvCache kv = WorkerKvCache(config_);
  for (size_t i = 0; i < groups_.size(); ++i) {
    Group& g = groups_[i];
    // Group i keeps its KV blocks on the nodes it names (every rank on all of them, sharded
    // by KV head), else on storage node i (docs/CLUSTER.md "KV placement").
    kv.clear_storage_nodes();
    for (const std::string& node : GroupStorageNodes(config_, static_cast<int>(i))) {
      kv.add_storage_nodes(node);
    }
    absl::Status s = g.workers->Load(model_dir_, config_.scheduler().max_batch_size(), kv, timeout);
    if (s.ok() && g.workers->vocab_size() != model_.vocab_size) {
      s = absl::FailedPreconditionError(absl::StrCat(
          "worker group ", g.workers->name(), " loaded a model with vocabulary ",
          g.workers->vocab_size(), ", the front end's config.json says ", model_.vocab_size));
    }
    if (!s.ok()) {
      SetStatus(gv1::HealthResponse::STATUS_FAILED, std::string(s.message()));
      return s;
    }
    g.scheduler->Start();
  }
  SetStatus(gv1::HealthResponse::STATUS_SERVING, "");
  if (probe_interval > absl::ZeroDuration()) {
    prober_ = std::thread([this, probe_interval] { ProbeLoop(probe_interval); });
  }
  return absl::OkStatus();
}

void GenerationService::ProbeLoop(absl::Duration interval) {
  while (true) {
    {
      absl::MutexLock l(&probe_mu_);
      auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(probe_mu_) { return stop_probe_; };
      if (probe_mu_.AwaitWithTimeout(absl::Condition(&stop), interval)) return;
    }
    for (Group& g : groups_) {
      if (!g.workers->healthy()) continue;
      absl::Status s = g.workers->Probe(std::max(interval, absl::Seconds(1)));
      if (!s.ok()) {
        std::fprintf(stderr, "frontend: worker group %s is unhealthy: %s\n",
                     g.workers->name().c_str(), std::string(s.message()).c_str());
      }
    }
  }
}

void GenerationService::Stop() {
  SetStatus(gv1::HealthResponse::STATUS_STOPPING, "stopping");
  {
    absl::MutexLock l(&probe_mu_);
    stop_probe_ = true;
  }
  if (prober_.joinable()) prober_.join();
  for (Group& g : groups_) {
    g.scheduler->Stop();
  }
}

bool GenerationService::serving() const {
  absl::MutexLock l(&mu_);
  return status_ == gv1::HealthResponse::STATUS_SERVING;
}

void GenerationService::SetStatus(Status s, std::string message) {
  absl::MutexLock l(&mu_);
  status_ = s;
  status_message_ = std::move(message);
}

GenerationService::Group* GenerationService::Route() {
  Group* best = nullptr;
  int64_t best_load = std::numeric_limits<int64_t>::max();
  for (Group& g : groups_) {
    if (!g.workers->healthy()) continue;
    const SchedulerStats s = g.scheduler->stats();
    if (s.queue_depth + s.running < best_load) {
      best_load = s.queue_depth + s.running;
      best = &g;
    }
  }
  return best;
}

absl::StatusOr<std::string> GenerationService::Authenticate(const grpc::ServerContext& ctx) const {
  if (!tokens_file_) return PeerHost(ctx.peer());
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) {
    unauthenticated_->Add();
    return absl::UnauthenticatedError(
        "missing \"authorization: Bearer <token>\" metadata (frontend.auth)");
  }
  std::optional<std::string> who =
      tokens_file_->Check(std::string_view(it->second.data(), it->second.size()));
  if (!who) {
    unauthenticated_->Add();
    return absl::UnauthenticatedError("unknown token (frontend.auth)");
  }
  return *who;
}

absl::Status GenerationService::OpenStream(const std::string& client) {
  const v1::Limits& lim = config_.frontend().limits();
  absl::MutexLock l(&streams_mu_);
  if (open_streams_ >= lim.max_open_streams()) {
    refused_->Add();
    return absl::ResourceExhaustedError(absl::StrCat(
        "the front end has ", open_streams_, " streams open (frontend.limits.max_open_streams is ",
        lim.max_open_streams(), ")"));
  }
  int& mine = streams_per_client_[client];
  if (mine >= lim.max_streams_per_client()) {
    refused_->Add();
    return absl::ResourceExhaustedError(
        absl::StrCat("client ", client, " has ", mine,
                     " streams open (frontend.limits.max_streams_per_client is ",
                     lim.max_streams_per_client(), ")"));
  }
  ++mine;
  ++open_streams_;
  return absl::OkStatus();
}

void GenerationService::CloseStream(const std::string& client) {
  absl::MutexLock l(&streams_mu_);
  --open_streams_;
  auto it = streams_per_client_.find(client);
  if (it != streams_per_client_.end() && --it->second <= 0) streams_per_client_.erase(it);
}

absl::StatusOr<SchedulerRequest> GenerationService::Prepare(const gv1::GenerateRequest& req) {
  return PrepareRequest(req, *tokenizer_, model_, config_.frontend());
}

grpc::Status GenerationService::Generate(grpc::ServerContext* ctx, const gv1::GenerateRequest* req,
                                         grpc::ServerWriter<gv1::GenerateResponse>* writer) {
  const auto arrived = std::chrono::steady_clock::now();
  absl::StatusOr<std::string> client = Authenticate(*ctx);
  if (!client.ok()) return ToGrpc(client.status());
  if (!serving()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the cluster is not serving");
  }
  absl::StatusOr<SchedulerRequest> prepared = Prepare(*req);
  if (!prepared.ok()) {
    refused_->Add();
    return ToGrpc(prepared.status());
  }
  if (absl::Status s = OpenStream(*client); !s.ok()) return ToGrpc(s);
  struct Closer {
    GenerationService* self;
    const std::string& client;
    ~Closer() { self->CloseStream(client); }
  } closer{this, *client};
  const std::string request_id = absl::StrCat("r", next_request_++);

  std::shared_ptr<Stream> stream = AttachStream(*prepared);
  Group* routed = nullptr;
  absl::StatusOr<uint64_t> id;
  {
    absl::MutexLock route(&route_mu_);
    routed = Route();
    if (routed != nullptr) id = routed->scheduler->Submit(*std::move(prepared));
  }
  if (routed == nullptr) {
    std::string why;
    for (const Group& g : groups_)
      absl::StrAppend(&why, why.empty() ? "" : "; ", g.workers->unhealthy_reason());
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        absl::StrCat("no healthy worker group: ", why));
  }
  Group& group = *routed;
  if (!id.ok()) {
    if (id.status().code() == absl::StatusCode::kResourceExhausted) refused_->Add();
    return ToGrpc(id.status());
  }
  requests_->Add();

  StreamDecoder text(*tokenizer_);
  if (grpc::Status relayed = RelayTokens(*ctx, *stream, *group.scheduler, *id, arrived, text,
                                         writer, first_token_seconds_, tokens_);
      !relayed.ok()) {
    return relayed;
  }

  absl::StatusOr<ScheduledResult> result;
  {
    absl::MutexLock l(&stream->mu);
    result = std::move(stream->result);
  }
  if (!result.ok()) {
    request_errors_->Add();
    return ToGrpc(absl::Status(result.status().code(),
                               absl::StrCat(request_id, ": ", result.status().message())));
  }
  if (std::string rest = text.Flush(); !rest.empty()) {
    gv1::GenerateResponse tail;
    tail.mutable_tokens()->set_text(rest);
    writer->Write(tail);
  }
  queue_seconds_->Observe(result->queue_seconds);
  const std::string id_text =
      req->request_id().empty() ? request_id : absl::StrCat(request_id, "/", req->request_id());
  const gv1::GenerateResponse last = FinalStats(*result, id_text, *group.workers);
  writer->Write(last);
  return grpc::Status::OK;
}

grpc::Status GenerationService::Tokenize(grpc::ServerContext* ctx, const gv1::TokenizeRequest* req,
                                         gv1::TokenizeResponse* resp) {
  if (auto who = Authenticate(*ctx); !who.ok()) return ToGrpc(who.status());
  for (int32_t id : tokenizer_->Encode(req->text(), !req->skip_special_tokens())) {
    resp->add_ids(id);
  }
  return grpc::Status::OK;
}

grpc::Status GenerationService::Detokenize(grpc::ServerContext* ctx,
                                           const gv1::DetokenizeRequest* req,
                                           gv1::DetokenizeResponse* resp) {
  if (auto who = Authenticate(*ctx); !who.ok()) return ToGrpc(who.status());
  std::vector<int32_t> ids(req->ids().begin(), req->ids().end());
  for (int32_t id : ids) {
    if (id < 0 || id >= tokenizer_->vocab_size()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("token ", id, " is outside the vocabulary"));
    }
  }
  resp->set_text(tokenizer_->Decode(ids, req->skip_special_tokens()));
  return grpc::Status::OK;
}

grpc::Status GenerationService::GetModelInfo(grpc::ServerContext* ctx,
                                             const gv1::GetModelInfoRequest*,
                                             gv1::ModelInfo* resp) {
  if (auto who = Authenticate(*ctx); !who.ok()) return ToGrpc(who.status());
  resp->set_name(std::filesystem::path(model_dir_).filename().string());
  resp->set_vocab_size(model_.vocab_size);
  resp->set_max_context(model_.max_position_embeddings);
  resp->set_num_layers(model_.num_hidden_layers);
  resp->set_num_attention_heads(model_.num_attention_heads);
  resp->set_num_kv_heads(model_.num_key_value_heads);
  resp->set_head_dim(model_.head_dim);
  resp->set_hidden_size(model_.hidden_size);
  for (int64_t id : model_.eos_token_ids) resp->add_eos_token_ids(static_cast<int32_t>(id));
  for (int64_t id : model_.bos_token_ids) resp->add_bos_token_ids(static_cast<int32_t>(id));
  resp->set_max_batch_size(config_.scheduler().max_batch_size());
  for (const Group& g : groups_) {
    gv1::WorkerGroupInfo* info = resp->add_worker_groups();
    info->set_name(g.workers->name());
    info->set_tensor_parallel_size(static_cast<int32_t>(g.workers->ranks().size()));
    for (size_t r = 0; r < g.workers->ranks().size(); ++r) {
      info->add_addresses(g.workers->ranks()[r].address);
      info->add_devices(r < g.workers->loaded_devices().size() ? g.workers->loaded_devices()[r]
                                                               : g.workers->ranks()[r].device);
    }
  }
  return grpc::Status::OK;
}

grpc::Status GenerationService::Health(grpc::ServerContext*, const gv1::HealthRequest*,
                                       gv1::HealthResponse* resp) {
  {
    absl::MutexLock l(&mu_);
    resp->set_status(status_);
    resp->set_message(status_message_);
  }
  if (resp->status() == gv1::HealthResponse::STATUS_SERVING) {
    int unhealthy = 0;
    std::string why;
    for (const Group& g : groups_) {
      if (g.workers->healthy()) continue;
      ++unhealthy;
      absl::StrAppend(&why, why.empty() ? "" : "; ", "worker group ", g.workers->name(),
                      " is unhealthy: ", g.workers->unhealthy_reason());
    }
    // Serving while one group is left; FAILED when none is.
    if (unhealthy == static_cast<int>(groups_.size())) {
      resp->set_status(gv1::HealthResponse::STATUS_FAILED);
    }
    resp->set_message(why);
  }
  for (const Group& g : groups_) {
    const SchedulerStats s = g.scheduler->stats();
    resp->set_queue_depth(resp->queue_depth() + s.queue_depth);
    resp->set_running_sequences(resp->running_sequences() + s.running);
  }
  return grpc::Status::OK;
}

}  // namespace apr::cluster
