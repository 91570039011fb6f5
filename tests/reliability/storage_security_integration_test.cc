// A launched cluster whose CPU worker keeps its KV blocks in a secured storage node
// (docs/KVSTORE.md "Security"): ClusterConfig.storage_security gives the node mutual TLS
// and a bearer token and the worker its client certificate and the token, through the
// launcher's flags. Streams generate (so the worker reached the node through both
// checks), the node's counters show the worker's blocks, and a plaintext or token-less
// caller is refused. Certificates are made by openssl at run time (MakeTestPki).
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "cluster/client.h"
#include "gtest/gtest.h"
#include "kvstore/security.h"
#include "rpc/kvstore/v1/kvstore.grpc.pb.h"
#include "tests/reliability/harness.h"

namespace apr::reliability {
namespace {

namespace gv1 = ::apr::generation::v1;
namespace kv1 = ::apr::kvstore::v1;

constexpr char kToken[] = "kv-cluster-token-5b1c9e";

// A port nothing listens on now (the node's; the test calls it directly).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

TEST(StorageSecurityIntegrationTest, WorkerUsesASecuredNode) {
  const std::string dir = TmpDir() + "/kv-pki";
  auto pki = MakeTestPki(dir);
  ASSERT_TRUE(pki.ok()) << pki.status();
  const std::string token = dir + "/kv-token";
  std::ofstream(token) << kToken << "\n";
  const int node_port = FreePort();
  ASSERT_GT(node_port, 0);
  const std::string extra = absl::StrCat(
      "kv_cache { placement: PLACEMENT_REMOTE }\n",
      "storage_nodes { name: \"kv0\" grpc { host: \"127.0.0.1\" port: ", node_port,
      " } pool_bytes: 67108864 extra_flags: \"--dtype=f32\" extra_flags: \"--ucx_tls=tcp\" "
      "extra_flags: \"--ucx_net_devices=lo\" }\n",
      "storage_security {\n  node_tls { cert_file: \"", pki->server_cert, "\" key_file: \"",
      pki->server_key, "\" ca_file: \"", pki->ca, "\" }\n  worker_tls { cert_file: \"",
      pki->client_cert, "\" key_file: \"", pki->client_key, "\" ca_file: \"", pki->ca,
      "\" }\n  auth_token_file: \"", token, "\"\n}\n");
  Launch launch("storage-security", LocalConfig(1, 4, extra));
  const int port = launch.WaitReady(absl::Seconds(90));
  ASSERT_GT(port, 0) << launch.Log();

  auto fe = cluster::ConnectGeneration(absl::StrCat("127.0.0.1:", port));
  ASSERT_NE(fe, nullptr);
  gv1::GenerateRequest r;
  for (int i = 0; i < 40; ++i) r.mutable_token_ids()->add_ids(5 + (i * 37) % 3000);
  r.set_max_tokens(24);
  r.set_ignore_eos(true);
  int64_t got = 0;
  auto st = cluster::StreamGenerate(*fe, r, [&](const gv1::TokenChunk& c) { got += c.ids_size(); });
  ASSERT_TRUE(st.ok()) << st.status() << "\n" << launch.Log();
  EXPECT_EQ(got, 24);

  const std::string node = absl::StrCat("127.0.0.1:", node_port);
  auto creds = kvstore::NodeChannelCredentials(
      kvstore::TlsFiles{pki->client_cert, pki->client_key, pki->ca, ""});
  ASSERT_TRUE(creds.ok()) << creds.status();
  auto stats = [&](const std::shared_ptr<grpc::ChannelCredentials>& c, bool with_token,
                   kv1::StatsResponse* out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    if (with_token) {
      ctx.AddMetadata(kvstore::kAuthorizationMetadata,
                      absl::StrCat(kvstore::kBearerPrefix, kToken));
    }
    return kv1::KvStore::NewStub(grpc::CreateChannel(node, c))->Stats(&ctx, {}, out);
  };
  kv1::StatsResponse s;
  grpc::Status ok = stats(*creds, true, &s);
  ASSERT_TRUE(ok.ok()) << ok.error_message();
  // The prompt's 2 blocks and the first generated one, per layer and KV head.
  EXPECT_GE(s.blocks_allocated_total(), 3);
  EXPECT_EQ(stats(*creds, false, &s).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(stats(grpc::InsecureChannelCredentials(), true, &s).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace apr::reliability
