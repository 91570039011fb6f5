#include "cluster/grpc_server.h"

#include <grpcpp/health_check_service_interface.h>

#include <limits>

#include "absl/strings/str_cat.h"
#include "cluster/config.h"

namespace apr::cluster {

absl::StatusOr<StartedServer> StartGrpcServer(const std::string& host, int port,
                                              const std::vector<grpc::Service*>& services,
                                              const GrpcServerOptions& options) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  StartedServer started;
  builder.AddListeningPort(
      HostPort(host, port),
      options.credentials ? options.credentials : grpc::InsecureServerCredentials(),
      &started.port);
  // Step requests and logits can be large; the default 4 MiB is a guess for chat.
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes > 0
                                       ? options.max_receive_message_bytes
                                       : std::numeric_limits<int>::max());
  builder.SetMaxSendMessageSize(std::numeric_limits<int>::max());
  for (grpc::Service* s : services) builder.RegisterService(s);
  started.server = builder.BuildAndStart();
  if (started.server == nullptr || started.port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen for gRPC on ", HostPort(host, port)));
  }
  return started;
}

void SetServing(grpc::Server& server, bool serving) {
  if (auto* health = server.GetHealthCheckService()) {
    health->SetServingStatus(serving);
    // "liveness" answers SERVING while the process runs (Kubernetes liveness probes);
    // the overall status is readiness.
    health->SetServingStatus("liveness", true);
  }
}

}  // namespace apr::cluster
