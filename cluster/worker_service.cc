#include "cluster/worker_service.h"

#include <chrono>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cluster/devices.h"
#include "runtime/cpu/cpu_decoder.h"

namespace apr::cluster {

namespace wv1 = ::apr::worker::v1;

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

WorkerService::WorkerService(std::string device_override, MetricsRegistry* metrics,
                             WorkerKvStoreOptions kv_store)
    : device_override_(std::move(device_override)) {
  if (!kv_store.address.empty()) kv_store_ = std::make_unique<WorkerKvStore>(std::move(kv_store));
  steps_ = metrics->AddCounter("apr_worker_steps_total", "Decode steps run by this worker.");
  tokens_ = metrics->AddCounter("apr_worker_tokens_total",
                                "Tokens sampled by this worker (first tokens included).");
  prefill_tokens_ =
      metrics->AddCounter("apr_worker_prefill_tokens_total", "Prompt tokens prefilled.");
  step_seconds_ = metrics->AddHistogram("apr_decode_step_seconds",
                                        "Seconds per decode step on this worker (all sequences).",
                                        ExponentialBuckets(0.0005, 2, 16));
  live_sequences_ = metrics->AddGauge("apr_worker_live_sequences", "Sequences alive.");
  // Zero until KV offload lands (kvstore/); named now so dashboards need no change.
  metrics->AddGaugeFunction("apr_fetch_bytes_total", "Bytes fetched from the KV storage tier.",
                            [] { return 0.0; });
  metrics->AddGaugeFunction("apr_prefetch_hits_total",
                            "Predicted blocks that were already fetched when needed.",
                            [] { return 0.0; });
  metrics->AddGaugeFunction("apr_prefetch_stalls_total", "Steps that waited on a block fetch.",
                            [] { return 0.0; });
}

WorkerService::~WorkerService() {
  absl::MutexLock l(&mu_);
  engine_.reset();  // frees the sequences (and their blocks in the node) before kv_store_
}

void WorkerService::UpdateLive() {
  live_count_ = engine_ ? engine_->live_sequences() : 0;
  live_sequences_->Set(static_cast<double>(live_count_.load()));
}

absl::Status WorkerService::Load(const wv1::LoadModelRequest& request,
                                 wv1::LoadModelResponse* response) {
  wv1::LoadModelRequest req = request;
  if (!device_override_.empty()) req.set_device(device_override_);
  if (req.model_path().empty()) return absl::InvalidArgumentError("model_path is empty");
  if (req.tensor_parallel().world_size() > 1) {
    return absl::UnimplementedError(
        absl::StrCat("tensor parallelism (world_size ", req.tensor_parallel().world_size(),
                     ") is not in this build yet (docs/CLUSTER.md, \"Tensor parallelism\")"));
  }
  absl::MutexLock l(&mu_);
  if (decoder_ != nullptr) {
    if (req.SerializeAsString() != loaded_.SerializeAsString()) {
      return absl::FailedPreconditionError(absl::StrCat("a model is already loaded (",
                                                        loaded_.model_path(), " on ", device_,
                                                        "); restart the worker to load another"));
    }
  } else {
    auto decoder = OpenDecoder(req.device(), req.model_path());
    if (!decoder.ok()) return decoder.status();
    DecoderStepEngineOptions options;
    if (kv_store_ != nullptr) {
      auto* cpu = dynamic_cast<cpu::CpuDecoder*>(decoder->get());
      if (cpu == nullptr) {
        return absl::UnimplementedError(
            absl::StrCat("--kv_store: this build offloads the KV cache of the CPU decoder only, "
                         "not ",
                         (*decoder)->device()));
      }
      options = kv_store_->EngineOptions(cpu);
    }
    decoder_ = std::move(*decoder);
    engine_ = std::make_unique<DecoderStepEngine>(*decoder_, std::move(options));
    loaded_ = req;
    device_ = decoder_->device();
    {
      absl::MutexLock dl(&device_mu_);
      device_name_ = device_;
    }
    loaded_flag_ = true;
  }
  response->set_device(device_);
  response->set_vocab_size(decoder_->config().vocab_size);
  response->set_max_context(decoder_->config().max_position_embeddings);
  return absl::OkStatus();
}

grpc::Status WorkerService::LoadModel(grpc::ServerContext*, const wv1::LoadModelRequest* req,
                                      wv1::LoadModelResponse* resp) {
  return ToGrpc(Load(*req, resp));
}

grpc::Status WorkerService::CreateNcclUniqueId(grpc::ServerContext*,
                                               const wv1::CreateNcclUniqueIdRequest*,
                                               wv1::CreateNcclUniqueIdResponse*) {
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                      "tensor parallelism over NCCL is not in this build yet");
}

grpc::Status WorkerService::NotLoaded() const {
  return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "no model loaded (call LoadModel)");
}

grpc::Status WorkerService::StartSequence(grpc::ServerContext*,
                                          const wv1::StartSequenceRequest* req,
                                          wv1::StartSequenceResponse* resp) {
  absl::MutexLock l(&mu_);
  if (engine_ == nullptr) return NotLoaded();
  const wv1::Sampling& s = req->sampling();
  SamplingParams sampling{s.temperature(), s.top_k(), s.top_p() == 0 ? 1.0f : s.top_p(), s.seed()};
  std::vector<int32_t> prompt(req->prompt_ids().begin(), req->prompt_ids().end());
  for (int32_t id : prompt) {
    if (id < 0 || id >= decoder_->config().vocab_size) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("prompt token ", id, " is outside the vocabulary [0, ",
                                       decoder_->config().vocab_size, ")"));
    }
  }
  absl::StatusOr<int32_t> token = engine_->Start(req->sequence_id(), prompt, sampling);
  stats_.set_rebuilt_sequences(engine_->stats().rebuilt);
  if (!token.ok()) return ToGrpc(token.status());
  resp->set_token(*token);
  if (req->return_logits()) {
    resp->mutable_logits()->Add(engine_->last_logits().begin(), engine_->last_logits().end());
  }
  stats_.set_tokens(stats_.tokens() + 1);
  stats_.set_prefill_tokens(stats_.prefill_tokens() + static_cast<int64_t>(prompt.size()));
  tokens_->Add(1);
  prefill_tokens_->Add(static_cast<double>(prompt.size()));
  UpdateLive();
  return grpc::Status::OK;
}

grpc::Status WorkerService::Step(grpc::ServerContext*, const wv1::StepRequest* req,
                                 wv1::StepResponse* resp) {
  absl::MutexLock l(&mu_);
  if (engine_ == nullptr) return NotLoaded();
  for (int32_t id : req->tokens()) {
    if (id < 0 || id >= decoder_->config().vocab_size) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("token ", id, " is outside the vocabulary"));
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<uint64_t> ids(req->sequence_ids().begin(), req->sequence_ids().end());
  std::vector<int32_t> tokens(req->tokens().begin(), req->tokens().end());
  absl::StatusOr<std::vector<int32_t>> next = engine_->Step(ids, tokens);
  if (!next.ok()) return ToGrpc(next.status());
  stats_.set_rebuilt_sequences(engine_->stats().rebuilt);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  resp->mutable_tokens()->Add(next->begin(), next->end());
  if (req->return_logits()) {
    resp->mutable_logits()->Add(engine_->last_logits().begin(), engine_->last_logits().end());
  }
  resp->set_step_seconds(seconds);
  stats_.set_steps(stats_.steps() + 1);
  stats_.set_tokens(stats_.tokens() + static_cast<int64_t>(next->size()));
  stats_.set_step_seconds(stats_.step_seconds() + seconds);
  steps_->Add(1);
  tokens_->Add(static_cast<double>(next->size()));
  step_seconds_->Observe(seconds);
  return grpc::Status::OK;
}

grpc::Status WorkerService::FreeSequences(grpc::ServerContext*,
                                          const wv1::FreeSequencesRequest* req,
                                          wv1::FreeSequencesResponse*) {
  absl::MutexLock l(&mu_);
  if (engine_ == nullptr) return grpc::Status::OK;
  std::vector<uint64_t> ids(req->sequence_ids().begin(), req->sequence_ids().end());
  engine_->Free(ids);
  UpdateLive();
  return grpc::Status::OK;
}

grpc::Status WorkerService::Health(grpc::ServerContext*, const wv1::HealthRequest*,
                                   wv1::HealthResponse* resp) {
  // No mu_: a long prefill or step holds it, and a probe must not take that for death.
  resp->set_model_loaded(loaded_flag_.load());
  {
    absl::MutexLock dl(&device_mu_);
    resp->set_device(device_name_);
  }
  resp->set_sequences(live_count_.load());
  return grpc::Status::OK;
}

grpc::Status WorkerService::GetStats(grpc::ServerContext*, const wv1::GetStatsRequest*,
                                     wv1::WorkerStats* resp) {
  absl::MutexLock l(&mu_);
  *resp = stats_;
  return grpc::Status::OK;
}

}  // namespace apr::cluster
