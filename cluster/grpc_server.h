// Starting a gRPC server on host:port (0 picks a free port), with the standard
// grpc.health.v1 service (Kubernetes' gRPC probes call it).
#ifndef APRUNTIME_CLUSTER_GRPC_SERVER_H_
#define APRUNTIME_CLUSTER_GRPC_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace apr::cluster {

struct StartedServer {
  std::unique_ptr<grpc::Server> server;
  int port = 0;  // the port bound
};

struct GrpcServerOptions {
  // Null: plaintext (grpc::InsecureServerCredentials).
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // Largest request message accepted; 0: no limit (cluster-internal listeners, whose
  // Step requests and logits can be large). The public listener sets Limits.max_request_bytes.
  int max_receive_message_bytes = 0;
};

absl::StatusOr<StartedServer> StartGrpcServer(const std::string& host, int port,
                                              const std::vector<grpc::Service*>& services,
                                              const GrpcServerOptions& options = {});

// Sets the standard health service's overall status (readiness); the service named
// "liveness" is always SERVING.
void SetServing(grpc::Server& server, bool serving);

}  // namespace apr::cluster

#endif  // APRUNTIME_CLUSTER_GRPC_SERVER_H_
