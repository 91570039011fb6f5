// worker: one worker process (one GPU, or the CPU): serves the Worker API
// (rpc/worker/v1) for the front end, and Prometheus metrics.
//
//   worker --grpc_port 0 --metrics_port 0 --ready_file /tmp/w.ready [--device cpu]
#include <stdlib.h>

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cluster/config.h"
#include "cluster/grpc_server.h"
#include "cluster/metrics_http.h"
#include "cluster/security.h"
#include "cluster/serving.h"
#include "cluster/worker_service.h"
#include "runtime/model_path.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "address to listen on (gRPC and metrics)");
ABSL_FLAG(int, grpc_port, 0, "Worker API port; 0 picks a free one");
ABSL_FLAG(int, metrics_port, 0, "Prometheus /metrics port; 0 picks a free one");
ABSL_FLAG(std::string, ready_file, "",
          "once serving, write grpc_port=N and metrics_port=N lines here (the launcher reads "
          "them)");
ABSL_FLAG(std::string, device, "",
          "cpu, cuda:N or auto; overrides the device the front end asks for");
ABSL_FLAG(std::string, model, "",
          "load this model folder at start (otherwise the front end's LoadModel call does)");
ABSL_FLAG(std::string, name, "worker", "name for logs (the launcher passes group/rank)");
ABSL_FLAG(std::string, kv_store, "",
          "host:port of a KV storage node (kvstore/) that holds the CPU decoder's KV blocks "
          "(several, comma-separated: sharded by KV head), "
          "rebuilding sequences when it is lost (docs/RELIABILITY.md); empty: in process. "
          "CUDA workers take kv_cache placement from the config instead");
ABSL_FLAG(int, kv_replication, 1,
          "2: keep two copies of every KV block, over the first and the second half of "
          "--kv_store's nodes, so that losing one costs no rebuild (docs/KVSTORE.md "
          "\"Replication\"); 0 or 1: one copy");
ABSL_FLAG(std::string, kv_ucx_tls, "tcp", "UCX transports to the storage node");
ABSL_FLAG(std::string, kv_ucx_net_devices, "lo", "UCX network devices to the storage node");
ABSL_FLAG(double, kv_reconnect_timeout_s, 10,
          "how long a step that lost the storage node waits for it to answer again before "
          "its sequences fail with UNAVAILABLE");
ABSL_FLAG(std::string, kv_tls_cert, "",
          "PEM client certificate for the storage node (ClusterConfig.storage_security."
          "worker_tls); with --kv_tls_key and --kv_tls_ca: mutual TLS to the node");
ABSL_FLAG(std::string, kv_tls_key, "", "its private key");
ABSL_FLAG(std::string, kv_tls_ca, "", "PEM CA that signed the storage node's certificate");
ABSL_FLAG(std::string, kv_tls_server_name, "",
          "name to check the node's certificate against instead of the host dialled");
ABSL_FLAG(std::string, kv_auth_token_file, "",
          "file with the storage node's bearer token (its --auth_token_file); empty: none");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate of the Worker API listener (ClusterConfig.internal_tls); set: TLS");
ABSL_FLAG(std::string, tls_key_file, "", "its private key");
ABSL_FLAG(std::string, tls_ca_file, "",
          "PEM CA that client certificates must be signed by; set: mutual TLS (required)");
ABSL_FLAG(int64_t, max_context, 0,
          "tokens per sequence; 0: the model's max_position_embeddings (a CUDA worker sizes "
          "its KV pool as max_sequences x max_context)");

namespace apr::cluster {
namespace {

int Fail(const std::string& name, const absl::Status& s) {
  std::fprintf(stderr, "%s: %s\n", name.c_str(), std::string(s.message()).c_str());
  return 1;
}

int Main() {
  const std::string name = absl::GetFlag(FLAGS_name);
  const std::string host = absl::GetFlag(FLAGS_host);
  MetricsRegistry metrics;
  // NVLink multicast stays off in every process (NCCL reads this at its first call).
  setenv("NCCL_NVLS_ENABLE", "0", 0);
  WorkerKvStoreOptions kv;
  kv.addresses = absl::StrSplit(absl::GetFlag(FLAGS_kv_store), ',', absl::SkipEmpty());
  kv.ucx_tls = absl::GetFlag(FLAGS_kv_ucx_tls);
  kv.ucx_net_devices = absl::GetFlag(FLAGS_kv_ucx_net_devices);
  kv.reconnect_timeout_seconds = absl::GetFlag(FLAGS_kv_reconnect_timeout_s);
  kv.replication = absl::GetFlag(FLAGS_kv_replication);
  kv.tls = {absl::GetFlag(FLAGS_kv_tls_cert), absl::GetFlag(FLAGS_kv_tls_key),
            absl::GetFlag(FLAGS_kv_tls_ca), absl::GetFlag(FLAGS_kv_tls_server_name)};
  kv.auth_token_file = absl::GetFlag(FLAGS_kv_auth_token_file);
  WorkerService service(absl::GetFlag(FLAGS_device), &metrics, absl::GetFlag(FLAGS_max_context),
                        kv);
  if (const std::string model = absl::GetFlag(FLAGS_model); !model.empty()) {
    ::apr::worker::v1::LoadModelRequest req;
    req.set_model_path(ResolveModelDir(model));
    req.set_device(absl::GetFlag(FLAGS_device).empty() ? "auto" : absl::GetFlag(FLAGS_device));
    ::apr::worker::v1::LoadModelResponse resp;
    if (absl::Status s = service.Load(req, &resp); !s.ok()) return Fail(name, s);
  }
  TlsConfig tls;
  tls.set_cert_file(absl::GetFlag(FLAGS_tls_cert_file));
  tls.set_key_file(absl::GetFlag(FLAGS_tls_key_file));
  tls.set_ca_file(absl::GetFlag(FLAGS_tls_ca_file));
  tls.set_require_client_cert(!tls.ca_file().empty());
  GrpcServerOptions server_options;
  auto creds = MakeServerCredentials(ResolveTlsPaths(tls));
  if (!creds.ok()) return Fail(name, creds.status());
  server_options.credentials = *creds;
  auto server = StartGrpcServer(host, absl::GetFlag(FLAGS_grpc_port), {&service}, server_options);
  if (!server.ok()) return Fail(name, server.status());
  SetServing(*server->server, true);
  auto http = MetricsHttpServer::Start(host, absl::GetFlag(FLAGS_metrics_port), &metrics);
  if (!http.ok()) return Fail(name, http.status());
  std::fprintf(stderr, "%s: Worker API on %s, metrics on http://%s/metrics\n", name.c_str(),
               HostPort(host, server->port).c_str(), HostPort(host, (*http)->port()).c_str());
  if (const std::string ready = absl::GetFlag(FLAGS_ready_file); !ready.empty()) {
    absl::Status s =
        WriteReadyFile(ready, {{"grpc_port", server->port}, {"metrics_port", (*http)->port()}});
    if (!s.ok()) return Fail(name, s);
  }
  const int sig = WaitForTerminationSignal();
  std::fprintf(stderr, "%s: signal %d, stopping\n", name.c_str(), sig);
  SetServing(*server->server, false);
  server->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return 0;
}

}  // namespace
}  // namespace apr::cluster

int main(int argc, char** argv) {
  apr::cluster::BlockTerminationSignals();
  absl::SetProgramUsageMessage(
      "Serves the Worker API (rpc/worker/v1) for a front end; usually started by launch.\n"
      "  worker --grpc_port 0 --metrics_port 0 --ready_file /tmp/w.ready [--device cpu]");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "worker: unexpected argument '%s'\n", rest[1]);
    return 2;
  }
  return apr::cluster::Main();
}
