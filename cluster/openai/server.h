// The OpenAI-compatible HTTP API of the front end (docs/OPENAI.md): POST /v1/completions,
// POST /v1/chat/completions (whole or streamed as server-sent events), GET /v1/models.
// Each request becomes one Generate call on the front end's own gRPC API, so auth, limits,
// admission and cancellation are the gRPC path's, not a second copy of them.
#ifndef APRUNTIME_CLUSTER_OPENAI_SERVER_H_
#define APRUNTIME_CLUSTER_OPENAI_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "cluster/openai/chat_template.h"
#include "rpc/generation/v1/generation.grpc.pb.h"

namespace httplib {
class Server;
}

namespace apr::cluster::openai {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0 picks a free port
  // The front end's Generation API, and the id clients name it by (the model folder's
  // name); the chat template comes from the folder's tokenizer_config.json.
  std::shared_ptr<::apr::generation::v1::Generation::Stub> generation;
  std::string model_id;
  std::string model_dir;
  int64_t default_max_tokens = 128;
  size_t max_body_bytes = 1 << 20;  // larger bodies get 413
  // HTTPS when set: the front end's own certificate (frontend.tls); with a client CA,
  // clients must present a certificate it signed (mutual TLS, as on gRPC).
  std::string tls_cert_file, tls_key_file, tls_client_ca_file;
  int threads = 64;                 // concurrent requests (each stream holds one)
};

class Server {
 public:
  // Binds and starts serving; fails when the port is taken or the model folder's chat
  // template does not parse.
  static absl::StatusOr<std::unique_ptr<Server>> Start(ServerOptions options);
  ~Server();  // stops serving; open streams are cancelled
  int port() const { return port_; }

 private:
  Server() = default;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
};

// The chat template of `model_dir`: tokenizer_config.json's chat_template, else the
// fallback of docs/OPENAI.md (role headers, one message a block).
absl::StatusOr<ChatTemplate> LoadChatTemplate(const std::string& model_dir,
                                              std::string* bos_token, std::string* eos_token);

}  // namespace apr::cluster::openai

#endif  // APRUNTIME_CLUSTER_OPENAI_SERVER_H_
