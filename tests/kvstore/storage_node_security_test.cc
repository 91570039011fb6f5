// Security of the storage node's control plane (docs/KVSTORE.md "Security"): the real
// storage_node binary on 127.0.0.1 with certificates made by openssl at test time (a CA,
// a server certificate for 127.0.0.1/localhost, two client certificates, and a rogue CA
// with its own client) and a bearer token. Plaintext and rogue clients are refused, bad
// or missing tokens are UNAUTHENTICATED, an authenticated client writes and reads blocks
// end to end, and a second authenticated client cannot read, write or free the first
// one's sequence (PERMISSION_DENIED), which stays intact. A node with a token but no TLS
// tells the token's holders apart by their owner id.
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "kvstore/client/remote_tier.h"
#include "kvstore/security.h"
#include "kvstore/testing/storage_node_process.h"
#include "rpc/kvstore/v1/kvstore.grpc.pb.h"

namespace apr::kvstore {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::StorageNodeBinary;
using testing::StorageNodeProcess;

constexpr int64_t kBlockBytes = 1024;
constexpr char kToken[] = "kv-token-0123456789abcdef";

struct Pki {
  std::string dir;
  std::string File(const std::string& name) const { return dir + "/" + name; }
  // Files of one client: "<name>.pem", "<name>.key", verified against the node's CA.
  TlsFiles Client(const std::string& name) const {
    return TlsFiles{File(name + ".pem"), File(name + ".key"), File("ca.pem"), ""};
  }
};

// A CA, a server certificate for localhost and 127.0.0.1, clients "alice" and "bob"
// signed by the CA, and "rogue" signed by a CA of its own.
absl::StatusOr<Pki> MakePki() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  Pki p{std::string(tmp != nullptr ? tmp : "/tmp") + "/kv-pki"};
  fs::create_directories(p.dir);
  std::ofstream(p.File("server.ext")) << "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
  std::ofstream(p.File("client.ext")) << "extendedKeyUsage=clientAuth\n";
  const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  auto leaf = [&](const std::string& name, const std::string& ca, const std::string& ext) {
    return absl::StrCat("openssl req ", ec, " -keyout ", name, ".key -out ", name,
                        ".csr -subj /CN=", name, "\nopenssl x509 -req -in ", name, ".csr -CA ", ca,
                        ".pem -CAkey ", ca, ".key -CAcreateserial -days 30 -extfile ", ext,
                        " -out ", name, ".pem\n");
  };
  const std::string script = absl::StrCat(
      "set -e; cd '", p.dir, "'; exec >openssl.log 2>&1\n", "openssl req -x509 ", ec,
      " -keyout ca.key -out ca.pem -days 30 -subj /CN=apr-kv-test-ca\n", "openssl req -x509 ", ec,
      " -keyout rogue-ca.key -out rogue-ca.pem -days 30 -subj /CN=apr-kv-rogue-ca\n",
      leaf("server", "ca", "server.ext"), leaf("alice", "ca", "client.ext"),
      leaf("bob", "ca", "client.ext"), leaf("rogue", "rogue-ca", "client.ext"));
  std::ofstream(p.File("make.sh")) << script;
  const int rc = std::system(absl::StrCat("timeout 60 /bin/sh '", p.File("make.sh"), "'").c_str());
  if (rc != 0) {
    std::stringstream log;
    log << std::ifstream(p.File("openssl.log")).rdbuf();
    return absl::InternalError(absl::StrCat("openssl failed (", rc, "): ", log.str()));
  }
  return p;
}

std::vector<std::byte> Pattern(uint8_t seed, int64_t blocks) {
  std::vector<std::byte> v(blocks * kBlockBytes);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::byte((i * 131 + seed * 7 + i / 97) & 0xff);
  return v;
}

class StorageNodeSecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto pki = MakePki();
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = new Pki(*pki);
    token_file_ = new std::string(pki_->File("token"));
    std::ofstream(*token_file_) << kToken << "\n";
    std::ofstream(pki_->File("wrong-token")) << "kv-token-0123456789abcdeF\n";
    auto node = StorageNodeProcess::Start(
        StorageNodeBinary(),
        {"--capacity_blocks=64", absl::StrCat("--block_bytes=", kBlockBytes), "--ucx_tls=tcp",
         "--ucx_net_devices=lo", "--tls_cert=" + pki_->File("server.pem"),
         "--tls_key=" + pki_->File("server.key"), "--tls_ca=" + pki_->File("ca.pem"),
         "--auth_token_file=" + *token_file_});
    ASSERT_TRUE(node.ok()) << node.status();
    node_ = node->release();
  }
  static void TearDownTestSuite() {
    delete node_;
    delete token_file_;
    delete pki_;
  }

  static RemoteTierOptions Options(const TlsFiles& tls, const std::string& token_file) {
    RemoteTierOptions o;
    o.address = node_->address();
    o.ucx.tls = "tcp";
    o.ucx.net_devices = "lo";
    o.rpc_timeout = absl::Seconds(5);
    o.lease_renewal = absl::ZeroDuration();
    o.tls = tls;
    o.auth_token_file = token_file;
    return o;
  }
  static absl::StatusOr<std::unique_ptr<RemoteTier>> Connect(const std::string& client) {
    return RemoteTier::Connect(Options(pki_->Client(client), *token_file_));
  }
  // A raw stub over mutual TLS as `client`, for calls RemoteTier does not make.
  static std::unique_ptr<v1::KvStore::Stub> Stub(const TlsFiles& tls) {
    auto creds = NodeChannelCredentials(tls);
    EXPECT_TRUE(creds.ok()) << creds.status();
    return v1::KvStore::NewStub(grpc::CreateChannel(node_->address(), *creds));
  }
  static void Deadline(grpc::ClientContext* ctx) {
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  }

  static Pki* pki_;
  static std::string* token_file_;
  static StorageNodeProcess* node_;
};

Pki* StorageNodeSecurityTest::pki_ = nullptr;
std::string* StorageNodeSecurityTest::token_file_ = nullptr;
StorageNodeProcess* StorageNodeSecurityTest::node_ = nullptr;

TEST_F(StorageNodeSecurityTest, PlaintextClientRefused) {
  auto t = RemoteTier::Connect(Options(TlsFiles{}, *token_file_));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kUnavailable) << t.status();
  // Not even the data plane's keys reach a plaintext caller.
  auto stub = v1::KvStore::NewStub(
      grpc::CreateChannel(node_->address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  Deadline(&ctx);
  ctx.AddMetadata(kAuthorizationMetadata, absl::StrCat(kBearerPrefix, kToken));
  v1::DataPlaneInfo dp;
  EXPECT_EQ(stub->GetDataPlane(&ctx, v1::GetDataPlaneRequest(), &dp).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(dp.ucx_rkey().empty());
}

TEST_F(StorageNodeSecurityTest, ClientOfAnotherCaRefused) {
  // The rogue client trusts the node's CA, but its own certificate is from another CA.
  TlsFiles rogue{pki_->File("rogue.pem"), pki_->File("rogue.key"), pki_->File("ca.pem"), ""};
  auto t = RemoteTier::Connect(Options(rogue, *token_file_));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kUnavailable) << t.status();
  // A client presenting no certificate at all is refused too: TLS alone is not enough.
  auto creds = grpc::SslCredentials(grpc::SslCredentialsOptions{
      std::string((std::stringstream() << std::ifstream(pki_->File("ca.pem")).rdbuf()).str()), "",
      ""});
  auto stub = v1::KvStore::NewStub(grpc::CreateChannel(node_->address(), creds));
  grpc::ClientContext ctx;
  Deadline(&ctx);
  ctx.AddMetadata(kAuthorizationMetadata, absl::StrCat(kBearerPrefix, kToken));
  v1::HealthResponse out;
  EXPECT_EQ(stub->Health(&ctx, v1::HealthRequest(), &out).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(StorageNodeSecurityTest, BadOrMissingTokenUnauthenticated) {
  auto wrong = RemoteTier::Connect(Options(pki_->Client("alice"), pki_->File("wrong-token")));
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kUnauthenticated) << wrong.status();
  EXPECT_THAT(wrong.status().message(), HasSubstr("bearer token is wrong"));
  EXPECT_THAT(wrong.status().message(), ::testing::Not(HasSubstr(kToken)));
  auto none = RemoteTier::Connect(Options(pki_->Client("alice"), ""));
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnauthenticated) << none.status();
  EXPECT_THAT(none.status().message(), HasSubstr("no bearer token"));
  // Every RPC checks, the one handing out UCX keys first of all.
  auto stub = Stub(pki_->Client("alice"));
  for (const std::string& header :
       {std::string(""), std::string("Bearer"), absl::StrCat("Bearer ", kToken, "x"),
        absl::StrCat("Basic ", kToken), std::string(kToken)}) {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    if (!header.empty()) ctx.AddMetadata(kAuthorizationMetadata, header);
    v1::DataPlaneInfo dp;
    grpc::Status s = stub->GetDataPlane(&ctx, v1::GetDataPlaneRequest(), &dp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << header;
    EXPECT_TRUE(dp.ucx_rkey().empty() && dp.ucx_worker_address().empty()) << header;
  }
  grpc::ClientContext ctx;
  Deadline(&ctx);
  v1::StatsResponse stats;
  EXPECT_EQ(stub->Stats(&ctx, v1::StatsRequest(), &stats).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(StorageNodeSecurityTest, AuthenticatedClientEndToEndAndOwnership) {
  auto alice = Connect("alice");
  ASSERT_TRUE(alice.ok()) << alice.status();
  auto bob = Connect("bob");
  ASSERT_TRUE(bob.ok()) << bob.status();
  constexpr uint64_t kSeq = 0xA11CE;
  ASSERT_TRUE((*alice)->CreateSequence(kSeq, 2, 1).ok());
  const std::vector<BlockKey> keys = {{0, 0, 0}, {0, 0, 1}, {1, 0, 0}};
  const std::vector<std::byte> data = Pattern(1, keys.size());
  std::vector<const std::byte*> src;
  for (size_t i = 0; i < keys.size(); ++i) src.push_back(data.data() + i * kBlockBytes);
  auto slots = (*alice)->WriteBlocks(kSeq, keys, src);
  ASSERT_TRUE(slots.ok()) << slots.status();
  auto read_back = [&]() {
    std::vector<std::byte> got(data.size());
    std::vector<std::byte*> dst;
    for (size_t i = 0; i < keys.size(); ++i) dst.push_back(got.data() + i * kBlockBytes);
    auto looked = (*alice)->LookupSlots(kSeq, keys);
    EXPECT_TRUE(looked.ok()) << looked.status();
    if (!looked.ok()) return false;
    EXPECT_EQ(*looked, *slots);
    auto id = (*alice)->StartRead(*looked, dst);
    EXPECT_TRUE(id.ok()) << id.status();
    EXPECT_TRUE(id.ok() && (*alice)->WaitRead(*id).ok());
    return got == data;
  };
  EXPECT_TRUE(read_back());

  // Bob, authenticated with the same token and a certificate of the same CA, cannot touch
  // Alice's sequence through any RPC that names it.
  auto denied = [](const absl::Status& s) {
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
    EXPECT_THAT(s.message(), HasSubstr("belongs to another client"));
  };
  denied((*bob)->LookupSlots(kSeq, keys).status());
  denied((*bob)->FreeSequence(kSeq).status());
  const std::vector<std::byte> evil = Pattern(9, 1);
  denied((*bob)->WriteBlocks(kSeq, {keys[0]}, {evil.data()}).status());
  denied((*bob)->AllocateBlocks(kSeq, {{0, 0, 2}}).status());
  auto stub = Stub(pki_->Client("bob"));
  {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    ctx.AddMetadata(kAuthorizationMetadata, absl::StrCat(kBearerPrefix, kToken));
    v1::ReadBlocksRequest req;
    req.set_sequence_id(kSeq);
    auto* r = req.add_blocks();
    r->set_layer(0);
    r->set_kv_head(0);
    r->set_first_block(0);
    r->set_count(1);
    v1::ReadBlocksResponse resp;
    EXPECT_EQ(stub->ReadBlocks(&ctx, req, &resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_TRUE(resp.data().empty());
  }
  {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    ctx.AddMetadata(kAuthorizationMetadata, absl::StrCat(kBearerPrefix, kToken));
    v1::GetBlockTableRequest req;
    req.set_sequence_id(kSeq);
    v1::GetBlockTableResponse resp;
    EXPECT_EQ(stub->GetBlockTable(&ctx, req, &resp).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  // Bob's own sequences work; Alice's data is intact and she can free it.
  ASSERT_TRUE((*bob)->CreateSequence(0xB0B, 1, 1).ok());
  EXPECT_TRUE((*bob)->WriteBlocks(0xB0B, {keys[0]}, {evil.data()}).ok());
  EXPECT_TRUE(read_back());
  auto freed = (*alice)->FreeSequence(kSeq);
  ASSERT_TRUE(freed.ok()) << freed.status();
  EXPECT_EQ(*freed, 3);
  EXPECT_TRUE((*bob)->FreeSequence(0xB0B).ok());
  // A freed (or never created) id is NOT_FOUND to everyone.
  EXPECT_EQ((*bob)->LookupSlots(kSeq, keys).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*alice)->FreeSequence(kSeq).status().code(), absl::StatusCode::kNotFound);
  // A new connection with Alice's certificate is Alice: a reconnecting worker keeps its
  // sequences.
  ASSERT_TRUE((*alice)->CreateSequence(kSeq + 1, 1, 1).ok());
  auto alice2 = Connect("alice");
  ASSERT_TRUE(alice2.ok()) << alice2.status();
  EXPECT_TRUE((*alice2)->FreeSequence(kSeq + 1).ok());
}

// Token without TLS (a trusted network): the owner id tells the token's holders apart.
TEST(StorageNodeTokenOnlyTest, OwnersOfOneTokenAreKeptApart) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string token = std::string(tmp != nullptr ? tmp : "/tmp") + "/token-only";
  std::ofstream(token) << kToken << "\n";
  auto node = StorageNodeProcess::Start(
      StorageNodeBinary(), {"--capacity_blocks=16", absl::StrCat("--block_bytes=", kBlockBytes),
                            "--ucx_tls=tcp", "--ucx_net_devices=lo", "--auth_token_file=" + token});
  ASSERT_TRUE(node.ok()) << node.status();
  RemoteTierOptions o;
  o.address = (*node)->address();
  o.ucx.tls = "tcp";
  o.ucx.net_devices = "lo";
  o.lease_renewal = absl::ZeroDuration();
  auto anonymous = RemoteTier::Connect(o);
  ASSERT_FALSE(anonymous.ok());
  EXPECT_EQ(anonymous.status().code(), absl::StatusCode::kUnauthenticated);
  o.auth_token_file = token;
  auto a = RemoteTier::Connect(o);
  auto b = RemoteTier::Connect(o);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE((*a)->CreateSequence(7, 1, 1).ok());
  EXPECT_EQ((*b)->FreeSequence(7).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE((*a)->FreeSequence(7).ok());
}

}  // namespace
}  // namespace apr::kvstore
