// Client API security on a launched cluster (docs/RELIABILITY.md, "Client API security"):
// TLS on the public listener and mutual TLS between the front end and its workers, with
// certificates made by openssl at run time; the bearer-token check; requests beyond the
// configured limits refused with a status naming the limit.
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "cluster/client.h"
#include "cluster/serving.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rpc/worker/v1/worker.grpc.pb.h"
#include "tests/reliability/harness.h"

namespace apr::reliability {
namespace {

namespace fs = std::filesystem;
namespace gv1 = ::apr::generation::v1;
using cluster::CallOptions;
using cluster::ConnectGeneration;
using cluster::StreamGenerate;
using cluster::TlsConfig;
using ::testing::HasSubstr;

TlsConfig ClientTls(const std::string& ca, const std::string& cert = "",
                    const std::string& key = "") {
  TlsConfig t;
  t.set_ca_file(ca);
  t.set_cert_file(cert);
  t.set_key_file(key);
  return t;
}

gv1::GenerateRequest Request(int prompt_tokens, int64_t max_tokens, uint64_t seed = 1) {
  gv1::GenerateRequest r;
  for (int i = 0; i < prompt_tokens; ++i) r.mutable_token_ids()->add_ids(5 + (i * 37) % 3000);
  r.set_max_tokens(max_tokens);
  r.set_ignore_eos(true);
  r.mutable_sampling()->set_seed(seed);
  return r;
}

class SecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = TmpDir() + "/pki";
    auto pki = MakeTestPki(dir);
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = new TestPki(*pki);
    tokens_ = dir + "/tokens";
    std::ofstream(tokens_) << "# test tokens\nalice token-alice-0123456789\nbob token-bob-9876543210\n";
    const std::string fe = absl::StrCat(
        "tls { cert_file: \"", pki_->server_cert, "\" key_file: \"", pki_->server_key, "\" }\n",
        "auth { tokens_file: \"", tokens_, "\" }\n",
        "limits { max_prompt_tokens: 64 max_new_tokens: 400 max_streams_per_client: 2 "
        "max_request_bytes: 1048576 }\n");
    const std::string internal =
        absl::StrCat("internal_tls { cert_file: \"", pki_->server_cert, "\" key_file: \"",
                     pki_->server_key, "\" ca_file: \"", pki_->ca, "\" }\n");
    launch_ = new Launch("security", LocalConfig(1, 8, internal, fe));
    port_ = launch_->WaitReady(absl::Seconds(90));
    ASSERT_GT(port_, 0) << launch_->Log();
  }
  static void TearDownTestSuite() {
    delete launch_;
    delete pki_;
  }
  std::string Address() const { return absl::StrCat("127.0.0.1:", port_); }
  std::unique_ptr<gv1::Generation::Stub> Stub() {
    auto s = ConnectGeneration(Address(), ClientTls(pki_->ca));
    EXPECT_TRUE(s.ok()) << s.status();
    return *std::move(s);
  }
  static CallOptions As(const std::string& token, double timeout = 60) {
    CallOptions o;
    o.token = token;
    o.timeout_seconds = timeout;
    return o;
  }

  static TestPki* pki_;
  static std::string tokens_;
  static Launch* launch_;
  static int port_;
};

TestPki* SecurityTest::pki_ = nullptr;
std::string SecurityTest::tokens_;
Launch* SecurityTest::launch_ = nullptr;
int SecurityTest::port_ = 0;

TEST_F(SecurityTest, TlsAndATokenGenerate) {
  auto stub = Stub();
  std::vector<int32_t> got;
  auto st = StreamGenerate(*stub, Request(8, 12), [&](const gv1::TokenChunk& c) {
    got.insert(got.end(), c.ids().begin(), c.ids().end());
  }, As("token-alice-0123456789"));
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(got.size(), 12u);
  EXPECT_EQ(st->generated_tokens(), 12);
  // Health stays open for probes: no token needed.
  grpc::ClientContext ctx;
  gv1::HealthResponse h;
  ASSERT_TRUE(stub->Health(&ctx, gv1::HealthRequest(), &h).ok());
  EXPECT_EQ(h.status(), gv1::HealthResponse::STATUS_SERVING);
}

TEST_F(SecurityTest, MissingOrWrongTokenIsUnauthenticated) {
  auto stub = Stub();
  for (const std::string token : {"", "token-alice-012345678", "token-alice-0123456789x",
                                   "token-mallory"}) {
    auto st = StreamGenerate(*stub, Request(8, 4), nullptr, As(token));
    EXPECT_EQ(st.status().code(), absl::StatusCode::kUnauthenticated) << token;
  }
  grpc::ClientContext ctx;
  gv1::TokenizeResponse ids;
  gv1::TokenizeRequest tr;
  tr.set_text("hello");
  EXPECT_EQ(stub->Tokenize(&ctx, tr, &ids).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // The token never reaches the logs.
  EXPECT_THAT(launch_->Log(), ::testing::Not(HasSubstr("token-alice")));
}

TEST_F(SecurityTest, PlaintextOrAnUntrustedServerIsRefused) {
  auto plain = ConnectGeneration(Address());
  auto st = StreamGenerate(*plain, Request(8, 4), nullptr, As("token-alice-0123456789", 5));
  EXPECT_EQ(st.status().code(), absl::StatusCode::kUnavailable) << st.status();
  // A client that trusts another CA does not accept the front end's certificate.
  auto rogue = ConnectGeneration(Address(), ClientTls(pki_->rogue_ca));
  ASSERT_TRUE(rogue.ok());
  st = StreamGenerate(**rogue, Request(8, 4), nullptr, As("token-alice-0123456789", 5));
  EXPECT_EQ(st.status().code(), absl::StatusCode::kUnavailable) << st.status();
}

TEST_F(SecurityTest, LimitsAreRefusedWithTheirNames) {
  auto stub = Stub();
  const CallOptions alice = As("token-alice-0123456789");
  auto st = StreamGenerate(*stub, Request(65, 4), nullptr, alice);
  EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.status().message()),
              HasSubstr("65 tokens; frontend.limits.max_prompt_tokens is 64"));
  st = StreamGenerate(*stub, Request(8, 401), nullptr, alice);
  EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.status().message()),
              HasSubstr("max_tokens is 401; frontend.limits.max_new_tokens is 400"));
  // A message over max_request_bytes never reaches the tokenizer.
  gv1::GenerateRequest big;
  big.set_text(std::string(2 << 20, 'a'));
  st = StreamGenerate(*stub, big, nullptr, alice);
  EXPECT_EQ(st.status().code(), absl::StatusCode::kResourceExhausted) << st.status();
}

TEST_F(SecurityTest, StreamsPerClientAreBounded) {
  auto stub = Stub();
  // Two long streams of alice's, held open until each has its first tokens.
  std::mutex mu;
  std::vector<grpc::ClientContext*> contexts(2, nullptr);
  std::atomic<int> started{0};
  std::vector<absl::StatusOr<gv1::GenerationStats>> held(2, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      bool first = true;
      CallOptions o = As("token-alice-0123456789");
      o.on_context = [&, i](grpc::ClientContext* c) {
        std::lock_guard<std::mutex> l(mu);
        contexts[i] = c;
      };
      held[i] = StreamGenerate(*stub, Request(8, 400, 100 + i), [&](const gv1::TokenChunk&) {
        if (first) ++started;
        first = false;
      }, o);
    });
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (started < 2 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_EQ(started, 2);
  auto third = StreamGenerate(*stub, Request(8, 4), nullptr, As("token-alice-0123456789"));
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted) << third.status();
  EXPECT_THAT(std::string(third.status().message()),
              HasSubstr("client alice has 2 streams open (frontend.limits.max_streams_per_client "
                        "is 2)"));
  // Another client is not held back by alice's streams.
  auto bob = StreamGenerate(*stub, Request(8, 4), nullptr, As("token-bob-9876543210"));
  EXPECT_TRUE(bob.ok()) << bob.status();
  {
    std::lock_guard<std::mutex> l(mu);
    for (grpc::ClientContext* c : contexts) {
      if (c) c->TryCancel();
    }
  }
  for (auto& t : threads) t.join();
  // Cancelled (or, if they raced to the end, finished): either way they close. The front
  // end notices a cancelled stream within its 200 ms wake-up, so alice is soon let in.
  absl::StatusOr<gv1::GenerationStats> again = absl::UnknownError("not run");
  const absl::Time until = absl::Now() + absl::Seconds(5);
  do {
    again = StreamGenerate(*stub, Request(8, 4), nullptr, As("token-alice-0123456789"));
  } while (!again.ok() && absl::Now() < until && (absl::SleepFor(absl::Milliseconds(50)), true));
  EXPECT_TRUE(again.ok()) << again.status();
}

TEST_F(SecurityTest, WorkersRequireAClientCertificateOfTheClusterCa) {
  // A worker started as the launcher starts it, with internal_tls.
  const std::string ready = TmpDir() + "/mtls-worker.ready";
  fs::remove(ready);
  auto worker = cluster::Process::Start(
      {fs::absolute("cluster/worker").string(), "--name=mtls", "--grpc_port=0",
       "--metrics_port=0", "--ready_file=" + ready, "--tls_cert_file=" + pki_->server_cert,
       "--tls_key_file=" + pki_->server_key, "--tls_ca_file=" + pki_->ca});
  ASSERT_TRUE(worker.ok()) << worker.status();
  int port = 0;
  for (int i = 0; i < 400 && port == 0; ++i) {
    if (auto p = cluster::ReadReadyFile(ready); p.ok()) port = (*p)["grpc_port"];
    absl::SleepFor(absl::Milliseconds(25));
  }
  ASSERT_GT(port, 0);
  const std::string address = absl::StrCat("127.0.0.1:", port);
  auto health = [&](const TlsConfig& tls) {
    auto channel = cluster::MakeChannel(address, tls);
    EXPECT_TRUE(channel.ok());
    auto stub = ::apr::worker::v1::Worker::NewStub(*channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    ::apr::worker::v1::HealthResponse resp;
    return stub->Health(&ctx, ::apr::worker::v1::HealthRequest(), &resp).error_code();
  };
  EXPECT_NE(health(TlsConfig()), grpc::StatusCode::OK) << "plaintext";
  EXPECT_NE(health(ClientTls(pki_->ca)), grpc::StatusCode::OK) << "no client certificate";
  EXPECT_NE(health(ClientTls(pki_->ca, pki_->rogue_cert, pki_->rogue_key)), grpc::StatusCode::OK)
      << "client certificate of another CA";
  EXPECT_EQ(health(ClientTls(pki_->ca, pki_->client_cert, pki_->client_key)),
            grpc::StatusCode::OK);
  worker->Signal(SIGTERM);
  EXPECT_TRUE(worker->Wait(absl::Seconds(10)).has_value());
}

TEST_F(SecurityTest, RefusalsAreCounted) {
  ASSERT_GT(launch_->metrics_port(), 0);
  EXPECT_GE(ScrapeMetric(launch_->metrics_port(), "apr_requests_unauthenticated_total"), 1);
}

}  // namespace
}  // namespace apr::reliability
