#include "cluster/worker_service.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "absl/strings/str_cat.h"
#include "backends/cpu/cpu_decoder.h"
#include "cluster/devices.h"
#include "cluster/kv_cache_request.h"
#include "kvstore/client/connect_nodes.h"

namespace apr::cluster {

namespace wv1 = ::apr::worker::v1;

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

WorkerService::WorkerService(std::string device_override, MetricsRegistry* metrics,
                             int64_t max_context, WorkerKvStoreOptions kv_store)
    : device_override_(std::move(device_override)), max_context_(max_context), kv_flags_(kv_store) {
  if (!kv_store.addresses.empty()) kv_store_ = std::make_unique<WorkerKvStore>(std::move(kv_store));
  steps_ = metrics->AddCounter("apr_worker_steps_total", "Decode steps run by this worker.");
  tokens_ = metrics->AddCounter("apr_worker_tokens_total",
                                "Tokens sampled by this worker (first tokens included).");
  prefill_tokens_ =
      metrics->AddCounter("apr_worker_prefill_tokens_total", "Prompt tokens prefilled.");
  step_seconds_ = metrics->AddHistogram("apr_decode_step_seconds",
                                        "Seconds per decode step on this worker (all sequences).",
                                        ExponentialBuckets(0.0005, 2, 16));
  tokens_per_second_ =
      metrics->AddGauge("apr_worker_decode_tokens_per_second",
                        "Tokens per second of this worker's last decode step (batch / step time).");
  live_sequences_ = metrics->AddGauge("apr_worker_live_sequences", "Sequences alive.");
  // The KV storage tier's counters: a CUDA decoder's (cluster/devices.h
  // ReadOffloadCounters), or the CPU worker's storage nodes' (WorkerKvStore::NodeBytesRead);
  // zero for a KV cache in the worker's own memory.
  metrics->AddGaugeFunction("apr_fetch_bytes_total", "Bytes fetched from the KV storage tier.",
                            [this] { return static_cast<double>(fetch_bytes_.load()); });
  metrics->AddGaugeFunction("apr_prefetch_hits_total",
                            "Predicted blocks that were already fetched when needed.",
                            [this] { return static_cast<double>(prefetch_hits_.load()); });
  metrics->AddLabelledGaugeFunction(
      "apr_storage_node_fetch_bytes_total",
      "Bytes this worker read from each storage node (remote KV cache).", "node", [this] {
        absl::MutexLock l(&node_bytes_mu_);
        MetricsRegistry::LabelledValues v;
        for (const auto& [node, bytes] : node_bytes_)
          v.emplace_back(node, static_cast<double>(bytes));
        return v;
      });
  metrics->AddGaugeFunction("apr_prefetch_stalls_total",
                            "Layer waits of decode steps that found their block fetch unfinished.",
                            [this] { return static_cast<double>(prefetch_stalls_.load()); });
}

WorkerService::~WorkerService() {
  absl::MutexLock l(&mu_);
  engine_.reset();  // frees the sequences (and their blocks in the node) before kv_store_
}

void WorkerService::UpdateLive() {
  live_count_ = engine_ ? engine_->live_sequences() : 0;
  live_sequences_->Set(static_cast<double>(live_count_.load()));
}

absl::Status WorkerService::UseStorageNodeOnCpu(const std::string& device,
                                                DecoderOptions* options) {
  if (options->placement != KvPlacement::kRemote || ResolveDevice(device) != "cpu") {
    return absl::OkStatus();
  }
  if (options->storage_nodes.empty()) {
    return absl::InvalidArgumentError(
        "kv_cache placement PLACEMENT_REMOTE: the config names no storage nodes");
  }
  if (absl::Status s = kvstore::CheckReplication(static_cast<int>(options->storage_nodes.size()),
                                                 options->storage_replication);
      !s.ok()) {
    return s;
  }
  if (kv_store_ == nullptr) {
    WorkerKvStoreOptions kv = kv_flags_;    // its TLS and token
    kv.addresses = options->storage_nodes;  // its group's nodes: several are sharded
    kv.replication = options->storage_replication;
    // No transport list of its own: as the CUDA workers, it takes the node's (GetDataPlane)
    // unless UCX_TLS is set here; the node may be on another host.
    kv.ucx_tls.clear();
    kv.ucx_net_devices.clear();
    kv_store_ = std::make_unique<WorkerKvStore>(std::move(kv));
  }
  options->placement = KvPlacement::kDevice;  // the decoder's side; the blocks go to the node
  return absl::OkStatus();
}

absl::Status WorkerService::Load(const wv1::LoadModelRequest& request,
                                 wv1::LoadModelResponse* response) {
  wv1::LoadModelRequest req = request;
  if (!device_override_.empty()) req.set_device(device_override_);
  if (req.model_path().empty()) return absl::InvalidArgumentError("model_path is empty");
  const wv1::TensorParallel& tp = req.tensor_parallel();
  const int world = std::max(tp.world_size(), 1);
  if (tp.rank() < 0 || tp.rank() >= world) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor_parallel.rank ", tp.rank(), " is outside [0, ", world, ")"));
  }
  absl::MutexLock l(&mu_);
  if (decoder_ != nullptr) {
    if (req.SerializeAsString() != loaded_.SerializeAsString()) {
      return absl::FailedPreconditionError(absl::StrCat("a model is already loaded (",
                                                        loaded_.model_path(), " on ", device_,
                                                        "); restart the worker to load another"));
    }
  } else {
    DecoderOptions options;
    options.max_sequences = req.max_sequences();
    options.max_context = max_context_;
    options.tp_rank = tp.rank();
    options.tp_size = world;
    options.nccl_unique_id = tp.nccl_unique_id();
    ApplyKvCacheRequest(req.kv_cache(), &options);
    options.storage_tls = kv_flags_.tls;  // a CUDA worker's tier client, as the CPU's
    options.storage_auth_token_file = kv_flags_.auth_token_file;
    if (absl::Status s = UseStorageNodeOnCpu(req.device(), &options); !s.ok()) return s;
    auto decoder = OpenDecoder(req.device(), req.model_path(), options);
    if (!decoder.ok()) return decoder.status();
    DecoderStepEngineOptions engine_options;
    if (kv_store_ != nullptr) {
      auto* cpu = dynamic_cast<cpu::CpuDecoder*>(decoder->get());
      if (cpu == nullptr) {
        return absl::UnimplementedError(absl::StrCat(
            "--kv_store is for the CPU decoder; a ", (*decoder)->device(),
            " worker takes kv_cache placement from the config (LoadModelRequest.kv_cache)"));
      }
      engine_options = kv_store_->EngineOptions(cpu);
    }
    decoder_ = std::move(*decoder);
    engine_ = std::make_unique<DecoderStepEngine>(*decoder_, std::move(engine_options));
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
                                               const wv1::CreateNcclUniqueIdRequest* req,
                                               wv1::CreateNcclUniqueIdResponse* resp) {
  if (req->world_size() < 2) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("world_size ", req->world_size(),
                                     ": a group needs 2 ranks "
                                     "or more"));
  }
  absl::StatusOr<std::string> id = ::apr::cluster::CreateNcclUniqueId();
  if (!id.ok()) return ToGrpc(id.status());
  resp->set_nccl_unique_id(*id);
  return grpc::Status::OK;
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
  const PromptPart part{!req->continues_prompt(), !req->more_prompt()};
  absl::StatusOr<int32_t> token = engine_->StartPart(req->sequence_id(), prompt, sampling, part);
  stats_.set_rebuilt_sequences(engine_->stats().rebuilt);
  if (!token.ok()) return ToGrpc(token.status());
  resp->set_token(*token);
  if (req->return_logits() && part.last) {
    resp->mutable_logits()->Add(engine_->last_logits().begin(), engine_->last_logits().end());
  }
  if (part.last) {
    stats_.set_tokens(stats_.tokens() + 1);
    tokens_->Add(1);
  }
  stats_.set_prefill_tokens(stats_.prefill_tokens() + static_cast<int64_t>(prompt.size()));
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
  engine_->set_keep_logits(req->return_logits());  // else greedy rows bring back only ids
  absl::StatusOr<std::vector<int32_t>> next = engine_->Step(ids, tokens);
  stats_.set_rebuilt_sequences(engine_->stats().rebuilt);
  if (!next.ok()) return ToGrpc(next.status());
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
  OffloadCounters oc = ReadOffloadCounters(*decoder_);
  if (kv_store_ != nullptr) {  // the CPU worker's KV cache on storage nodes
    oc.node_bytes_read = kv_store_->NodeBytesRead();
    oc.fetch_bytes = 0;
    for (const auto& [node, bytes] : oc.node_bytes_read) oc.fetch_bytes += bytes;
  }
  stats_.set_fetch_bytes(oc.fetch_bytes);
  stats_.set_prefetch_hits(oc.prefetch_hits);
  stats_.set_prefetch_stalls(oc.prefetch_stalls);
  fetch_bytes_ = oc.fetch_bytes;
  prefetch_hits_ = oc.prefetch_hits;
  prefetch_stalls_ = oc.prefetch_stalls;
  {
    absl::MutexLock l(&node_bytes_mu_);
    node_bytes_ = oc.node_bytes_read;
  }
  steps_->Add(1);
  tokens_->Add(static_cast<double>(next->size()));
  step_seconds_->Observe(seconds);
  if (seconds > 0) tokens_per_second_->Set(static_cast<double>(next->size()) / seconds);
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
