#include "cluster/client.h"

#include <grpcpp/grpcpp.h>

#include <optional>

#include "absl/strings/str_cat.h"

namespace apr::cluster {

namespace gv1 = ::apr::generation::v1;

std::unique_ptr<gv1::Generation::Stub> ConnectGeneration(const std::string& address) {
  return gv1::Generation::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

absl::StatusOr<std::unique_ptr<gv1::Generation::Stub>> ConnectGeneration(
    const std::string& address, const TlsConfig& tls) {
  auto channel = MakeChannel(address, tls);
  if (!channel.ok()) return channel.status();
  return gv1::Generation::NewStub(*channel);
}

absl::StatusOr<gv1::GenerationStats> StreamGenerate(
    gv1::Generation::Stub& stub, const gv1::GenerateRequest& request,
    const std::function<void(const gv1::TokenChunk&)>& on_chunk, double timeout_seconds) {
  CallOptions o;
  o.timeout_seconds = timeout_seconds;
  return StreamGenerate(stub, request, on_chunk, o);
}

absl::StatusOr<gv1::GenerationStats> StreamGenerate(
    gv1::Generation::Stub& stub, const gv1::GenerateRequest& request,
    const std::function<void(const gv1::TokenChunk&)>& on_chunk, const CallOptions& options) {
  grpc::ClientContext ctx;
  if (options.timeout_seconds > 0) {
    ctx.set_deadline(
        std::chrono::system_clock::now() +
        std::chrono::milliseconds(static_cast<int64_t>(options.timeout_seconds * 1000)));
  }
  if (!options.token.empty()) ctx.AddMetadata("authorization", "Bearer " + options.token);
  if (options.on_context) options.on_context(&ctx);
  std::unique_ptr<grpc::ClientReader<gv1::GenerateResponse>> reader = stub.Generate(&ctx, request);
  gv1::GenerateResponse msg;
  std::optional<gv1::GenerationStats> stats;
  while (reader->Read(&msg)) {
    if (msg.has_tokens()) {
      if (on_chunk) on_chunk(msg.tokens());
    } else if (msg.has_stats()) {
      stats = msg.stats();
    }
  }
  grpc::Status s = reader->Finish();
  if (options.on_context) options.on_context(nullptr);
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
  }
  if (!stats) return absl::DataLossError("the stream ended without stats");
  return *stats;
}

std::string StopReasonText(gv1::StopReason r) {
  switch (r) {
    case gv1::STOP_REASON_MAX_TOKENS:
      return "max_tokens";
    case gv1::STOP_REASON_STOP_TOKEN:
      return "stop_token";
    case gv1::STOP_REASON_CONTEXT_FULL:
      return "context_full";
    case gv1::STOP_REASON_CANCELLED:
      return "cancelled";
    default:
      return "unknown";
  }
}

}  // namespace apr::cluster
