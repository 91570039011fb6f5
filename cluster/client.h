// Client side of the Generation API: one streaming Generate call, chunk by chunk.
#ifndef APRUNTIME_CLUSTER_CLIENT_H_
#define APRUNTIME_CLUSTER_CLIENT_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "rpc/generation/v1/generation.grpc.pb.h"

namespace apr::cluster {

// A channel and stub to the front end at host:port.
std::unique_ptr<::apr::generation::v1::Generation::Stub> ConnectGeneration(
    const std::string& address);

// Streams one request; `on_chunk` sees every token chunk in order. Returns the final
// stats, or the call's error (a stream that ends without stats is DataLoss).
absl::StatusOr<::apr::generation::v1::GenerationStats> StreamGenerate(
    ::apr::generation::v1::Generation::Stub& stub,
    const ::apr::generation::v1::GenerateRequest& request,
    const std::function<void(const ::apr::generation::v1::TokenChunk&)>& on_chunk,
    double timeout_seconds = 0);

// "max_tokens", "stop_token", ... as runtime's StopReasonName spells them.
std::string StopReasonText(::apr::generation::v1::StopReason r);

}  // namespace apr::cluster

#endif  // APRUNTIME_CLUSTER_CLIENT_H_
