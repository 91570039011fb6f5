#include "kvstore/security.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace apr::kvstore {
namespace {

std::string WriteTmp(const std::string& name, const std::string& text) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(ConstantTimeEqualsTest, EqualOnlyWhenIdentical) {
  EXPECT_TRUE(ConstantTimeEquals("s3cret-token", "s3cret-token"));
  EXPECT_FALSE(ConstantTimeEquals("s3cret-tokeN", "s3cret-token"));
  EXPECT_FALSE(ConstantTimeEquals("s3cret-token-and-more", "s3cret-token"));
  EXPECT_FALSE(ConstantTimeEquals("s3cret", "s3cret-token"));
  EXPECT_FALSE(ConstantTimeEquals("", "s3cret-token"));
  // A prefix padded with NULs must not pass as the secret.
  EXPECT_FALSE(ConstantTimeEquals(std::string("ab\0", 3), "ab"));
}

TEST(ReadAuthTokenTest, TrimsAndRefusesBadFiles) {
  auto t = ReadAuthToken(WriteTmp("good", "  tok-123_ABC\n"));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, "tok-123_ABC");
  EXPECT_EQ(ReadAuthToken(WriteTmp("blank", " \n")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadAuthToken(WriteTmp("two", "a b\n")).status().code(),
            absl::StatusCode::kInvalidArgument);
  const absl::Status missing = ReadAuthToken("/nonexistent/token").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.message().find("/nonexistent/token"), std::string::npos);
  // The token never appears in an error.
  const absl::Status inner = ReadAuthToken(WriteTmp("inner", "topsecret\tx\n")).status();
  EXPECT_EQ(inner.message().find("topsecret"), std::string::npos);
}

TEST(CredentialsTest, MutualTlsNeedsAllThreeFiles) {
  EXPECT_TRUE(NodeServerCredentials(TlsFiles{}).ok());
  EXPECT_TRUE(NodeChannelCredentials(TlsFiles{}).ok());
  TlsFiles only_cert;
  only_cert.cert_file = WriteTmp("cert.pem", "x");
  EXPECT_EQ(NodeServerCredentials(only_cert).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(NodeChannelCredentials(only_cert).status().code(), absl::StatusCode::kInvalidArgument);
  TlsFiles missing{"/nonexistent/c.pem", "/nonexistent/k.pem", "/nonexistent/ca.pem", ""};
  EXPECT_EQ(NodeServerCredentials(missing).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace apr::kvstore
