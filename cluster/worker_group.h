// The front end's view of one worker group: a StepEngine whose calls go to every rank
// of the group over the Worker API. All ranks get the same call at the same time (a
// tensor-parallel step needs every rank for its all-reduces); rank 0's answer is used.
#ifndef APRUNTIME_CLUSTER_WORKER_GROUP_H_
#define APRUNTIME_CLUSTER_WORKER_GROUP_H_

#include <memory>
#include <string>
#include <vector>

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
  WorkerGroup(std::string name, std::vector<RankAddress> ranks);

  // Waits (up to `timeout`) for every rank to answer, then loads the model on all of
  // them; for more than one rank, rank 0 first creates the NCCL unique id that every
  // rank's LoadModel carries, and the LoadModel calls run concurrently (each rank's
  // ncclCommInitRank returns once all have joined).
  absl::Status Load(const std::string& model_path, int max_sequences,
                    const ::apr::worker::v1::KvCache& kv_cache, absl::Duration timeout);

  int64_t max_context() const override { return max_context_; }
  absl::StatusOr<int32_t> Start(uint64_t id, absl::Span<const int32_t> prompt,
                                const SamplingParams& sampling) override;
  absl::StatusOr<std::vector<int32_t>> Step(absl::Span<const uint64_t> ids,
                                            absl::Span<const int32_t> tokens) override;
  void Free(absl::Span<const uint64_t> ids) override;

  const std::string& name() const { return name_; }
  const std::vector<RankAddress>& ranks() const { return ranks_; }
  // Rank devices as the workers reported them after Load.
  const std::vector<std::string>& loaded_devices() const { return loaded_devices_; }
  int64_t vocab_size() const { return vocab_size_; }

 private:
  // Runs `call(rank)` on every rank concurrently; returns rank 0's status, or the first
  // failure of another rank.
  absl::Status OnAllRanks(const std::function<grpc::Status(int rank)>& call);

  std::string name_;
  std::vector<RankAddress> ranks_;
  std::vector<std::unique_ptr<::apr::worker::v1::Worker::Stub>> stubs_;
  std::vector<std::string> loaded_devices_;
  int64_t max_context_ = 0;
  int64_t vocab_size_ = 0;
};

}  // namespace apr::cluster

#endif  // APRUNTIME_CLUSTER_WORKER_GROUP_H_
