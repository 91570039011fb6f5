#include "tests/reliability/concurrent_streams.h"

#include <utility>

#include "absl/time/clock.h"
#include "cluster/client.h"

namespace apr::reliability {

namespace gv1 = ::apr::generation::v1;

ConcurrentStreams::ConcurrentStreams(int n)
    : tokens(n), result(n, absl::UnknownError("running")), ctx_(n, nullptr) {}

ConcurrentStreams::~ConcurrentStreams() { Join(); }

void ConcurrentStreams::Start(const std::string& address,
                              std::function<gv1::GenerateRequest(int)> request, double timeout) {
  for (int i = 0; i < static_cast<int>(tokens.size()); ++i) {
    threads_.emplace_back([=, this] {
      auto stub = cluster::ConnectGeneration(address);
      cluster::CallOptions o;
      o.timeout_seconds = timeout;
      o.on_context = [this, i](grpc::ClientContext* c) {
        std::lock_guard<std::mutex> l(mu_);
        ctx_[i] = c;
      };
      auto r = cluster::StreamGenerate(
          *stub, request(i),
          [&](const gv1::TokenChunk& c) {
            std::lock_guard<std::mutex> l(mu_);
            if (tokens[i].empty()) ++started_;
            tokens[i].insert(tokens[i].end(), c.ids().begin(), c.ids().end());
          },
          o);
      std::lock_guard<std::mutex> l(mu_);
      result[i] = std::move(r);
      ended_at.push_back(absl::Now());
    });
  }
}

bool ConcurrentStreams::AwaitStarted(int n, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (started_ < n && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  return started_ >= n;
}

bool ConcurrentStreams::AwaitTokens(size_t n, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    {
      std::lock_guard<std::mutex> l(mu_);
      bool all = true;
      for (const auto& t : tokens) all = all && t.size() >= n;
      if (all) return true;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return false;
}

void ConcurrentStreams::Cancel(int i) {
  std::lock_guard<std::mutex> l(mu_);
  if (ctx_[i]) ctx_[i]->TryCancel();
}

void ConcurrentStreams::Join() {
  for (auto& t : threads_) t.join();
  threads_.clear();
}

}  // namespace apr::reliability
