// The front end's view of one worker group: a StepEngine whose calls go to every rank
// of the group over the Worker API. All ranks get the same call at the same time (a
// tensor-parallel step needs every rank for its all-reduces); rank 0's answer is used.
#ifndef APRUNTIME_CLUSTER_WORKER_GROUP_H_
#define APRUNTIME_CLUSTER_WORKER_GROUP_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "cluster/security.h"

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "rpc/worker/v1/worker.grpc.pb.h"
#include "runtime/step_engine.h"

namespace apr::cluster {

struct RankAddress {
  std::string address;  // host:port of the Worker API
  std::string device;   // as configured ("cpu", "cuda:1", "auto")
};

class WorkerGroup : public StepEngine {
 public:
  // `tls`: the client side of the cluster's mutual TLS (ClusterConfig.internal_tls);
  // empty: plaintext.
  WorkerGroup(std::string name, std::vector<RankAddress> ranks, const TlsConfig& tls = {});

  // Waits (up to `timeout`) for every rank to answer, then loads the model on all of
  // them; for more than one rank, rank 0 first creates the NCCL unique id that every
  // rank's LoadModel carries, and the LoadModel calls run concurrently (each rank's
  // ncclCommInitRank returns once all have joined).
  absl::Status Load(const std::string& model_path, int max_sequences,
                    const ::apr::worker::v1::KvCache& kv_cache, absl::Duration timeout);

  int64_t max_context() const override { return max_context_; }
  absl::StatusOr<int32_t> StartPart(uint64_t id, absl::Span<const int32_t> tokens,
                                    const SamplingParams& sampling, PromptPart part) override;
  absl::StatusOr<std::vector<int32_t>> Step(absl::Span<const uint64_t> ids,
                                            absl::Span<const int32_t> tokens) override;
  void Free(absl::Span<const uint64_t> ids) override;

  const std::string& name() const { return name_; }
  const std::vector<RankAddress>& ranks() const { return ranks_; }
  // Rank devices as the workers reported them after Load.
  const std::vector<std::string>& loaded_devices() const { return loaded_devices_; }
  int64_t vocab_size() const { return vocab_size_; }

  // Health: a group is unhealthy once a call to one of its ranks failed for the transport
  // (UNAVAILABLE: the process is gone or unreachable) or a Probe failed. It stays so (a
  // restarted worker has lost the model and its sequences). Thread-safe.
  bool healthy() const { return healthy_.load(); }
  // Why the group is unhealthy ("worker g0/0 (127.0.0.1:5555): ..."), or empty.
  std::string unhealthy_reason() const;
  // Asks every rank's Health within `timeout`; marks the group unhealthy on failure.
  absl::Status Probe(absl::Duration timeout);

 private:
  void MarkUnhealthy(const absl::Status& s);
  // Runs `call(rank)` on every rank concurrently; returns rank 0's status, or the first
  // failure of another rank.
  // An UNAVAILABLE result is followed by a Probe (`probe_on_failure`), which marks the
  // group unhealthy when a rank does not answer Health.
  absl::Status OnAllRanks(const std::function<grpc::Status(int rank)>& call,
                          bool probe_on_failure = true);

  std::string name_;
  std::vector<RankAddress> ranks_;
  std::vector<std::unique_ptr<::apr::worker::v1::Worker::Stub>> stubs_;
  std::vector<std::string> loaded_devices_;
  int64_t max_context_ = 0;
  int64_t vocab_size_ = 0;
  std::atomic<bool> healthy_{true};
  mutable absl::Mutex mu_;
  std::string unhealthy_reason_ ABSL_GUARDED_BY(mu_);
};

}  // namespace apr::cluster

#endif  // APRUNTIME_CLUSTER_WORKER_GROUP_H_
