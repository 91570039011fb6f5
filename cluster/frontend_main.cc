// frontend: the cluster's front end. Serves the Generation API (rpc/generation/v1) and
// Prometheus metrics, runs one continuous-batching scheduler per worker group and drives
// the workers named in the config step by step.
//
//   frontend --config configs/local.textproto [--ready_file /tmp/fe.ready]
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "cluster/config.h"
#include "cluster/generation_service.h"
#include "cluster/grpc_server.h"
#include "cluster/metrics_http.h"
#include "cluster/openai/server.h"
#include "cluster/security.h"
#include "cluster/serving.h"
#include "runtime/model_path.h"

ABSL_FLAG(std::string, config, "", "cluster config (text format, cluster/config.proto)");
ABSL_FLAG(std::string, ready_file, "",
          "once listening, write grpc_port=N and metrics_port=N lines here (the launcher reads "
          "them, then waits for Health to say SERVING)");

namespace apr::cluster {
namespace {

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "frontend: %s\n", std::string(s.message()).c_str());
  return 1;
}

// The OpenAI HTTP API, calling this process's own Generation API through an in-process
// channel: no TLS or network hop between the two APIs of one process; the bearer token
// still travels as metadata and is checked by the Generation API.
absl::StatusOr<std::unique_ptr<openai::Server>> StartOpenAiApi(const ClusterConfig& config,
                                                               const std::string& model_dir,
                                                               grpc::Server& grpc_server) {
  openai::ServerOptions o;
  o.host = config.frontend().grpc().host();
  o.port = config.frontend().openai().port();
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  o.generation = ::apr::generation::v1::Generation::NewStub(grpc_server.InProcessChannel(args));
  if (config.frontend().has_tls()) {
    const TlsConfig tls = ResolveTlsPaths(config.frontend().tls());
    o.tls_cert_file = tls.cert_file();
    o.tls_key_file = tls.key_file();
    if (tls.require_client_cert()) o.tls_client_ca_file = tls.ca_file();
  }
  o.model_dir = model_dir;
  // Clients name the model by its folder's name ("apr-tiny").
  std::filesystem::path dir = std::filesystem::path(model_dir).lexically_normal();
  if (!dir.has_filename()) dir = dir.parent_path();
  o.model_id = dir.filename().string();
  if (config.frontend().default_max_tokens() > 0) {
    o.default_max_tokens = config.frontend().default_max_tokens();
  }
  if (config.frontend().openai().max_body_bytes() > 0) {
    o.max_body_bytes = config.frontend().openai().max_body_bytes();
  }
  return openai::Server::Start(std::move(o));
}

int Main() {
  if (absl::GetFlag(FLAGS_config).empty()) {
    return Fail(absl::InvalidArgumentError("--config is required"));
  }
  auto config = LoadConfig(ResolveUserPath(absl::GetFlag(FLAGS_config)));
  if (!config.ok()) return Fail(config.status());
  const std::string model_dir = ResolveModelDir(config->model().path());
  MetricsRegistry metrics;
  auto service = GenerationService::Create(*config, model_dir, &metrics);
  if (!service.ok()) return Fail(service.status());

  const std::string host = config->frontend().grpc().host();
  GrpcServerOptions server_options;
  auto creds = MakeServerCredentials(ResolveTlsPaths(config->frontend().tls()));
  if (!creds.ok()) return Fail(creds.status());
  server_options.credentials = *creds;
  server_options.max_receive_message_bytes = config->frontend().limits().max_request_bytes();
  auto server = StartGrpcServer(host, config->frontend().grpc().port(), {service->get()},
                                server_options);
  if (!server.ok()) return Fail(server.status());
  SetServing(*server->server, false);
  auto http = MetricsHttpServer::Start(host, config->frontend().metrics_port(), &metrics);
  if (!http.ok()) return Fail(http.status());
  std::fprintf(stderr, "frontend: Generation API on %s, metrics on http://%s/metrics\n",
               HostPort(host, server->port).c_str(), HostPort(host, (*http)->port()).c_str());
  std::map<std::string, int> ports = {{"grpc_port", server->port},
                                      {"metrics_port", (*http)->port()}};
  std::unique_ptr<openai::Server> openai_api;
  if (config->frontend().has_openai()) {
    auto api = StartOpenAiApi(*config, model_dir, *server->server);
    if (!api.ok()) return Fail(api.status());
    openai_api = *std::move(api);
    ports["openai_port"] = openai_api->port();
    std::fprintf(stderr, "frontend: OpenAI API on http://%s/v1\n",
                 HostPort(host, openai_api->port()).c_str());
  }
  if (const std::string ready = absl::GetFlag(FLAGS_ready_file); !ready.empty()) {
    absl::Status s = WriteReadyFile(ready, ports);
    if (!s.ok()) return Fail(s);
  }
  // Loading happens after the server is up so that Health can say STARTING meanwhile;
  // a failure ends the process, which the launcher (or Kubernetes) reports.
  if (absl::Status s = (*service)->LoadWorkers(); !s.ok()) return Fail(s);
  SetServing(*server->server, true);
  std::fprintf(stderr, "frontend: serving %s\n", model_dir.c_str());

  const int sig = WaitForTerminationSignal();
  std::fprintf(stderr, "frontend: signal %d, stopping\n", sig);
  SetServing(*server->server, false);
  (*service)->Stop();  // in-flight streams end with STOP_REASON_CANCELLED
  server->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return 0;
}

}  // namespace
}  // namespace apr::cluster

int main(int argc, char** argv) {
  apr::cluster::BlockTerminationSignals();
  absl::SetProgramUsageMessage(
      "Serves the Generation API (rpc/generation/v1) over the workers a cluster config names; "
      "usually started by launch.\n  frontend --config configs/local.textproto");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "frontend: unexpected argument '%s'\n", rest[1]);
    return 2;
  }
  return apr::cluster::Main();
}
