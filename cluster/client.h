// Client side of the Generation API: one streaming Generate call, chunk by chunk.
#ifndef APRUNTIME_CLUSTER_CLIENT_H_
#define APRUNTIME_CLUSTER_CLIENT_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cluster/security.h"
#include "rpc/generation/v1/generation.grpc.pb.h"

namespace apr::cluster {

// A channel and stub to the front end at host:port (plaintext).
std::unique_ptr<::apr::generation::v1::Generation::Stub> ConnectGeneration(
    const std::string& address);
// The same over TLS (`tls`: ca_file verifies the front end; cert_file + key_file are a
// client certificate when the listener asks for one). Fails when a file is unreadable.
absl::StatusOr<std::unique_ptr<::apr::generation::v1::Generation::Stub>> ConnectGeneration(
    const std::string& address, const TlsConfig& tls);

struct CallOptions {
  double timeout_seconds = 0;  // 0: no deadline
  std::string token;           // sent as "authorization: Bearer <token>" when not empty
  // Set by StreamGenerate to the call's context while it runs (so that another thread
  // may TryCancel it); may be null.
  std::function<void(grpc::ClientContext*)> on_context;
};

// Streams one request; `on_chunk` sees every token chunk in order. Returns the final
// stats, or the call's error (a stream that ends without stats is DataLoss).
absl::StatusOr<::apr::generation::v1::GenerationStats> StreamGenerate(
    ::apr::generation::v1::Generation::Stub& stub,
    const ::apr::generation::v1::GenerateRequest& request,
    const std::function<void(const ::apr::generation::v1::TokenChunk&)>& on_chunk,
    double timeout_seconds = 0);
absl::StatusOr<::apr::generation::v1::GenerationStats> StreamGenerate(
    ::apr::generation::v1::Generation::Stub& stub,
    const ::apr::generation::v1::GenerateRequest& request,
    const std::function<void(const ::apr::generation::v1::TokenChunk&)>& on_chunk,
    const CallOptions& options);

// "max_tokens", "stop_token", ... as runtime's StopReasonName spells them.
std::string StopReasonText(::apr::generation::v1::StopReason r);

}  // namespace apr::cluster

#endif  // APRUNTIME_CLUSTER_CLIENT_H_
