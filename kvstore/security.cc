#include "kvstore/security.h"

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace apr::kvstore {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", what, " ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", path, " is empty"));
  }
  return ss.str();
}

struct Pem {
  std::string cert, key, ca;
};

// Mutual TLS needs all three files on either side; `side` names the flags in errors.
absl::StatusOr<Pem> ReadPems(const TlsFiles& tls, absl::string_view side) {
  if (tls.cert_file.empty() || tls.key_file.empty() || tls.ca_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(side, ": mutual TLS needs a certificate, its key and a CA file (got cert '",
                     tls.cert_file, "', key '", tls.key_file, "', CA '", tls.ca_file, "')"));
  }
  Pem p;
  auto cert = ReadFile(tls.cert_file, "certificate");
  if (!cert.ok()) return cert.status();
  auto key = ReadFile(tls.key_file, "private key");
  if (!key.ok()) return key.status();
  auto ca = ReadFile(tls.ca_file, "CA file");
  if (!ca.ok()) return ca.status();
  return Pem{*std::move(cert), *std::move(key), *std::move(ca)};
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> NodeServerCredentials(
    const TlsFiles& tls) {
  if (!tls.enabled()) return grpc::InsecureServerCredentials();
  auto pem = ReadPems(tls, "storage node TLS (--tls_cert, --tls_key, --tls_ca)");
  if (!pem.ok()) return pem.status();
  grpc::SslServerCredentialsOptions o(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  o.pem_key_cert_pairs.push_back({pem->key, pem->cert});
  o.pem_root_certs = pem->ca;
  return grpc::SslServerCredentials(o);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> NodeChannelCredentials(
    const TlsFiles& tls) {
  if (!tls.enabled()) return grpc::InsecureChannelCredentials();
  auto pem = ReadPems(tls, "storage node client TLS");
  if (!pem.ok()) return pem.status();
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = pem->ca;
  o.pem_cert_chain = pem->cert;
  o.pem_private_key = pem->key;
  return grpc::SslCredentials(o);
}

absl::StatusOr<std::string> ReadAuthToken(const std::string& path) {
  auto text = ReadFile(path, "auth token file");
  if (!text.ok()) return text.status();
  const std::string token(absl::StripAsciiWhitespace(*text));
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("auth token file ", path, " is blank"));
  }
  for (char c : token) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c)) || !absl::ascii_isprint(c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "auth token file ", path, " must hold one token of printable characters, no spaces"));
    }
  }
  return token;
}

bool ConstantTimeEquals(absl::string_view given, absl::string_view secret) {
  // Walks the secret's length whatever was given, so timing tells neither where the
  // first difference is nor (beyond the secret's own length) how long `given` is.
  unsigned diff = given.size() == secret.size() ? 0 : 1;
  for (size_t i = 0; i < secret.size(); ++i) {
    const unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff |= g ^ static_cast<unsigned char>(secret[i]);
  }
  return diff == 0;
}

}  // namespace apr::kvstore
