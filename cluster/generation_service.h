// The front end's Generation API (rpc/generation/v1): tokenizes, admits each request to
// the least-loaded worker group's continuous-batching scheduler, and streams the tokens
// back as the scheduler produces them.
#ifndef APRUNTIME_CLUSTER_GENERATION_SERVICE_H_
#define APRUNTIME_CLUSTER_GENERATION_SERVICE_H_

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "cluster/config.h"
#include "cluster/metrics.h"
#include "cluster/security.h"
#include "cluster/worker_group.h"
#include "rpc/generation/v1/generation.grpc.pb.h"
#include "runtime/model_config.h"
#include "runtime/scheduler.h"
#include "runtime/tokenizer/tokenizer.h"

namespace apr::cluster {

class GenerationService final : public ::apr::generation::v1::Generation::Service {
 public:
  // `model_dir` holds config.json and tokenizer.json. Starts in STATUS_STARTING.
  static absl::StatusOr<std::unique_ptr<GenerationService>> Create(const ClusterConfig& config,
                                                                   const std::string& model_dir,
                                                                   MetricsRegistry* metrics);
  ~GenerationService() override;

  // Loads the model on every worker group and starts their schedulers; SERVING after.
  // Then probes the groups' workers every `probe_interval` (a group whose worker stops
  // answering is unhealthy: requests are routed to the others, Health names it).
  absl::Status LoadWorkers(absl::Duration probe_interval = absl::Milliseconds(500));
  // Stops admitting; running and queued requests end as cancelled. Idempotent.
  void Stop();
  bool serving() const;

  grpc::Status Generate(
      grpc::ServerContext* ctx, const ::apr::generation::v1::GenerateRequest* req,
      grpc::ServerWriter<::apr::generation::v1::GenerateResponse>* writer) override;
  grpc::Status Tokenize(grpc::ServerContext*, const ::apr::generation::v1::TokenizeRequest* req,
                        ::apr::generation::v1::TokenizeResponse* resp) override;
  grpc::Status Detokenize(grpc::ServerContext*, const ::apr::generation::v1::DetokenizeRequest* req,
                          ::apr::generation::v1::DetokenizeResponse* resp) override;
  grpc::Status GetModelInfo(grpc::ServerContext*, const ::apr::generation::v1::GetModelInfoRequest*,
                            ::apr::generation::v1::ModelInfo* resp) override;
  grpc::Status Health(grpc::ServerContext*, const ::apr::generation::v1::HealthRequest*,
                      ::apr::generation::v1::HealthResponse* resp) override;

 private:
  struct Group {
    std::unique_ptr<WorkerGroup> workers;
    std::unique_ptr<Scheduler> scheduler;
  };
  using Status = ::apr::generation::v1::HealthResponse::Status;

  GenerationService(const ClusterConfig& config, std::string model_dir,
                    std::unique_ptr<Tokenizer> tokenizer, ModelConfig model,
                    MetricsRegistry* metrics);
  // Turns a request into the scheduler's terms; checks frontend.limits.
  absl::StatusOr<SchedulerRequest> Prepare(const ::apr::generation::v1::GenerateRequest& req);
  // The healthy group with the fewest queued plus running requests; null when none is.
  Group* Route() ABSL_EXCLUSIVE_LOCKS_REQUIRED(route_mu_);
  void SetStatus(Status s, std::string message);
  // The caller's identity: its auth client name (UNAUTHENTICATED without a known token
  // when auth is configured), else its peer host.
  absl::StatusOr<std::string> Authenticate(const grpc::ServerContext& ctx) const;
  // Counts an open stream against the limits; ResourceExhausted naming the limit.
  absl::Status OpenStream(const std::string& client);
  void CloseStream(const std::string& client);
  void ProbeLoop(absl::Duration interval);

  const ClusterConfig config_;
  const std::string model_dir_;
  std::unique_ptr<Tokenizer> tokenizer_;
  const ModelConfig model_;
  std::vector<Group> groups_;
  std::atomic<uint64_t> next_request_{1};
  std::optional<TokenSet> tokens_file_;

  // Held from Route() through the scheduler's Submit(): concurrent requests each see the
  // ones routed before them, so they spread over the groups instead of all picking the
  // group that looked idle.
  absl::Mutex route_mu_;

  absl::Mutex streams_mu_;
  absl::flat_hash_map<std::string, int> streams_per_client_ ABSL_GUARDED_BY(streams_mu_);
  int open_streams_ ABSL_GUARDED_BY(streams_mu_) = 0;

  absl::Mutex probe_mu_;
  bool stop_probe_ ABSL_GUARDED_BY(probe_mu_) = false;
  std::thread prober_;

  mutable absl::Mutex mu_;
  Status status_ ABSL_GUARDED_BY(mu_);
  std::string status_message_ ABSL_GUARDED_BY(mu_);

  Counter* requests_;
  Counter* request_errors_;
  Counter* tokens_;
  Histogram* step_seconds_;
  Gauge* tokens_per_second_;
  Histogram* queue_seconds_;
  Histogram* first_token_seconds_;
  Counter* refused_;
  Counter* unauthenticated_;
};

}  // namespace apr::cluster

#endif  // APRUNTIME_CLUSTER_GENERATION_SERVICE_H_
