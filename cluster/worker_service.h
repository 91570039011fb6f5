// The Worker API (rpc/worker/v1) over an in-process DecoderStepEngine. Calls are
// serialised: the front end drives one worker group from one scheduler thread, and a
// tensor-parallel rank must run the same calls in the same order as its peers.
#ifndef APRUNTIME_CLUSTER_WORKER_SERVICE_H_
#define APRUNTIME_CLUSTER_WORKER_SERVICE_H_

#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "cluster/devices.h"
#include "cluster/metrics.h"
#include "cluster/worker_kv_store.h"
#include "rpc/worker/v1/worker.grpc.pb.h"
#include "runtime/decoder.h"
#include "runtime/step_engine.h"

namespace apr::cluster {

class WorkerService final : public ::apr::worker::v1::Worker::Service {
 public:
  // `device_override`, when not empty, wins over LoadModelRequest.device (the worker's
  // --device flag: the process, not the front end, knows which GPU it was given).
  // `max_context` (the worker's --max_context flag; 0: the model's) bounds the tokens per
  // sequence, and with them a CUDA worker's KV pool (max_sequences x max_context).
  // `kv_store` with an address: the CPU decoder's KV blocks live in that storage node.
  WorkerService(std::string device_override, MetricsRegistry* metrics, int64_t max_context = 0,
                WorkerKvStoreOptions kv_store = {});
  ~WorkerService() override;

  // Loads without an RPC (the worker's --model flag).
  // A CPU worker given kv_cache PLACEMENT_REMOTE keeps its KV blocks (float32) in its
  // group's storage node through the same WorkerKvStore as --kv_store (sequences rebuilt
  // when the node is lost), and opens its decoder with the cache otherwise in process.
  // CUDA workers and other placements: unchanged.
  absl::Status UseStorageNodeOnCpu(const std::string& device, DecoderOptions* options);
  absl::Status Load(const ::apr::worker::v1::LoadModelRequest& request,
                    ::apr::worker::v1::LoadModelResponse* response);

  grpc::Status LoadModel(grpc::ServerContext*, const ::apr::worker::v1::LoadModelRequest* req,
                         ::apr::worker::v1::LoadModelResponse* resp) override;
  grpc::Status CreateNcclUniqueId(grpc::ServerContext*,
                                  const ::apr::worker::v1::CreateNcclUniqueIdRequest*,
                                  ::apr::worker::v1::CreateNcclUniqueIdResponse*) override;
  grpc::Status StartSequence(grpc::ServerContext*,
                             const ::apr::worker::v1::StartSequenceRequest* req,
                             ::apr::worker::v1::StartSequenceResponse* resp) override;
  grpc::Status Step(grpc::ServerContext*, const ::apr::worker::v1::StepRequest* req,
                    ::apr::worker::v1::StepResponse* resp) override;
  grpc::Status FreeSequences(grpc::ServerContext*,
                             const ::apr::worker::v1::FreeSequencesRequest* req,
                             ::apr::worker::v1::FreeSequencesResponse*) override;
  grpc::Status Health(grpc::ServerContext*, const ::apr::worker::v1::HealthRequest*,
                      ::apr::worker::v1::HealthResponse* resp) override;
  grpc::Status GetStats(grpc::ServerContext*, const ::apr::worker::v1::GetStatsRequest*,
                        ::apr::worker::v1::WorkerStats* resp) override;

 private:
  grpc::Status NotLoaded() const;
  void UpdateLive() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string device_override_;
  const int64_t max_context_;
  // Declared before engine_, which uses it: destroyed after.
  std::unique_ptr<WorkerKvStore> kv_store_;
  // The storage node options from the flags (security, timeouts), also for the node a
  // PLACEMENT_REMOTE config names.
  const WorkerKvStoreOptions kv_flags_;
  // Health reads these without mu_, which a long prefill or step holds.
  std::atomic<bool> loaded_flag_{false};
  std::atomic<int64_t> live_count_{0};
  absl::Mutex device_mu_;
  std::string device_name_ ABSL_GUARDED_BY(device_mu_);
  absl::Mutex mu_;
  std::unique_ptr<Decoder> decoder_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<DecoderStepEngine> engine_ ABSL_GUARDED_BY(mu_);
  ::apr::worker::v1::LoadModelRequest loaded_ ABSL_GUARDED_BY(mu_);
  std::string device_ ABSL_GUARDED_BY(mu_);
  ::apr::worker::v1::WorkerStats stats_ ABSL_GUARDED_BY(mu_);

  Counter* steps_;
  Counter* tokens_;
  Counter* prefill_tokens_;
  Histogram* step_seconds_;
  Gauge* tokens_per_second_;
  Gauge* live_sequences_;
  // The decoder's KV-tier counters after the last step (read by the metrics thread).
  std::atomic<int64_t> fetch_bytes_{0}, prefetch_hits_{0}, prefetch_stalls_{0};
  // Per storage node (apr_storage_node_fetch_bytes_total), under its own lock: the metrics
  // thread must not wait for a step (mu_).
  absl::Mutex node_bytes_mu_;
  std::vector<std::pair<std::string, int64_t>> node_bytes_ ABSL_GUARDED_BY(node_bytes_mu_);
};

// absl::Status to grpc::Status, keeping the code and message.
grpc::Status ToGrpc(const absl::Status& s);
absl::Status FromGrpc(const grpc::Status& s);

}  // namespace apr::cluster

#endif  // APRUNTIME_CLUSTER_WORKER_SERVICE_H_
