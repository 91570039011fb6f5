// Generate streams to a front end, each on its own thread, for the reliability tests: each
// records its tokens, when it ended and how, and can be cancelled while it runs.
#ifndef APRUNTIME_TESTS_RELIABILITY_CONCURRENT_STREAMS_H_
#define APRUNTIME_TESTS_RELIABILITY_CONCURRENT_STREAMS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "rpc/generation/v1/generation.grpc.pb.h"

namespace apr::reliability {

class ConcurrentStreams {
 public:
  explicit ConcurrentStreams(int n);
  ~ConcurrentStreams();  // joins

  // Starts stream i with request(i) on its own channel to `address`, with a deadline of
  // `timeout` seconds.
  void Start(const std::string& address,
             std::function<::apr::generation::v1::GenerateRequest(int)> request, double timeout);
  // Until `n` streams have their first token; false at the timeout.
  bool AwaitStarted(int n, absl::Duration timeout);
  // Until every stream has at least `n` tokens; false at the timeout.
  bool AwaitTokens(size_t n, absl::Duration timeout);
  void Cancel(int i);
  void Join();

  // Read after Join().
  std::vector<std::vector<int32_t>> tokens;
  std::vector<absl::StatusOr<::apr::generation::v1::GenerationStats>> result;
  std::vector<absl::Time> ended_at;  // in the order the streams ended

 private:
  std::mutex mu_;
  std::atomic<int> started_{0};
  std::vector<grpc::ClientContext*> ctx_;
  std::vector<std::thread> threads_;
};

}  // namespace apr::reliability

#endif  // APRUNTIME_TESTS_RELIABILITY_CONCURRENT_STREAMS_H_
