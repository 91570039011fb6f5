#include "cluster/security.h"

#include "gtest/gtest.h"

namespace apr::cluster {
namespace {

TEST(TokenSetTest, NamesAndBareTokens) {
  TokenSet t = TokenSet::FromLines("# comment\nalice s3cret-a\n\n  bob\ts3cret-b # trailing\nbare-token\n");
  EXPECT_EQ(t.size(), 3u);
  EXPECT_EQ(t.Check("Bearer s3cret-a"), "alice");
  EXPECT_EQ(t.Check("Bearer s3cret-b"), "bob");
  EXPECT_EQ(t.Check("Bearer bare-token"), "token-5");
  EXPECT_EQ(t.Check("Bearer s3cret-"), std::nullopt);   // prefix
  EXPECT_EQ(t.Check("Bearer s3cret-ab"), std::nullopt);  // longer
  EXPECT_EQ(t.Check("s3cret-a"), std::nullopt);          // no scheme
  EXPECT_EQ(t.Check("Basic s3cret-a"), std::nullopt);
  EXPECT_EQ(t.Check("Bearer "), std::nullopt);
  EXPECT_EQ(t.Check(""), std::nullopt);
}

TEST(TokenSetTest, LoadFailsCleanly) {
  EXPECT_EQ(TokenSet::Load("/nonexistent/tokens").status().code(), absl::StatusCode::kNotFound);
}

TEST(SecurityTest, PeerHost) {
  EXPECT_EQ(PeerHost("ipv4:127.0.0.1:5555"), "127.0.0.1");
  EXPECT_EQ(PeerHost("ipv6:[::1]:5555"), "[::1]");
  EXPECT_EQ(PeerHost("unix:/tmp/s"), "/tmp/s");
}

TEST(SecurityTest, PlaintextWithoutFilesAndErrorsNameTheFile) {
  TlsConfig none;
  EXPECT_FALSE(TlsEnabled(none));
  EXPECT_TRUE(MakeServerCredentials(none).ok());
  TlsConfig bad;
  bad.set_cert_file("/nonexistent/cert.pem");
  bad.set_key_file("/nonexistent/key.pem");
  auto s = MakeServerCredentials(bad);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("cert_file /nonexistent/cert.pem"), std::string::npos);
  bad.set_ca_file("/nonexistent/ca.pem");
  EXPECT_FALSE(MakeChannelCredentials(bad).ok());
}

}  // namespace
}  // namespace apr::cluster
