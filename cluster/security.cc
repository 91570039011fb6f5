#include "cluster/security.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "runtime/model_path.h"

namespace apr::cluster {

namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* field) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", field, " ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str().empty()) return absl::InvalidArgumentError(absl::StrCat(field, " ", path, " is empty"));
  return ss.str();
}

// Compares without stopping at the first differing byte.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

bool TlsEnabled(const TlsConfig& tls) {
  return !tls.cert_file().empty() || !tls.ca_file().empty();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsConfig& tls) {
  if (!TlsEnabled(tls)) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions o(
      tls.require_client_cert() ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  auto cert = ReadPem(tls.cert_file(), "cert_file");
  if (!cert.ok()) return cert.status();
  auto key = ReadPem(tls.key_file(), "key_file");
  if (!key.ok()) return key.status();
  o.pem_key_cert_pairs.push_back({*key, *cert});
  if (!tls.ca_file().empty()) {
    auto ca = ReadPem(tls.ca_file(), "ca_file");
    if (!ca.ok()) return ca.status();
    o.pem_root_certs = *ca;
  }
  return grpc::SslServerCredentials(o);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsConfig& tls) {
  if (!TlsEnabled(tls)) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions o;
  if (!tls.ca_file().empty()) {
    auto ca = ReadPem(tls.ca_file(), "ca_file");
    if (!ca.ok()) return ca.status();
    o.pem_root_certs = *ca;
  }
  if (!tls.cert_file().empty()) {
    auto cert = ReadPem(tls.cert_file(), "cert_file");
    if (!cert.ok()) return cert.status();
    auto key = ReadPem(tls.key_file(), "key_file");
    if (!key.ok()) return key.status();
    o.pem_cert_chain = *cert;
    o.pem_private_key = *key;
  }
  return grpc::SslCredentials(o);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address,
                                                            const TlsConfig& tls,
                                                            grpc::ChannelArguments args) {
  auto creds = MakeChannelCredentials(tls);
  if (!creds.ok()) return creds.status();
  if (TlsEnabled(tls) && !tls.server_name().empty()) {
    args.SetSslTargetNameOverride(tls.server_name());
  }
  return grpc::CreateCustomChannel(address, *creds, args);
}

TlsConfig ResolveTlsPaths(const TlsConfig& tls) {
  TlsConfig out = tls;
  auto fix = [](const std::string& p) {
    return p.empty() ? p : std::filesystem::absolute(ResolveModelDir(p)).string();
  };
  out.set_cert_file(fix(tls.cert_file()));
  out.set_key_file(fix(tls.key_file()));
  out.set_ca_file(fix(tls.ca_file()));
  return out;
}

absl::StatusOr<TokenSet> TokenSet::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read auth.tokens_file ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  TokenSet t = FromLines(ss.str());
  if (t.size() == 0) {
    return absl::InvalidArgumentError(absl::StrCat("auth.tokens_file ", path, " has no tokens"));
  }
  return t;
}

TokenSet TokenSet::FromLines(const std::string& text) {
  TokenSet t;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    if (size_t hash = line.find('#'); hash != absl::string_view::npos) line = line.substr(0, hash);
    std::vector<absl::string_view> words =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (words.size() == 1) {
      t.tokens_.emplace_back(std::string(words[0]), absl::StrCat("token-", line_no));
    } else if (words.size() >= 2) {
      t.tokens_.emplace_back(std::string(words[1]), std::string(words[0]));
    }
  }
  return t;
}

std::optional<std::string> TokenSet::Check(std::string_view authorization_std) const {
  const absl::string_view authorization(authorization_std.data(), authorization_std.size());
  constexpr absl::string_view kBearer = "Bearer ";
  if (!absl::StartsWith(authorization, kBearer)) return std::nullopt;
  absl::string_view token = absl::StripAsciiWhitespace(authorization.substr(kBearer.size()));
  if (token.empty()) return std::nullopt;
  std::optional<std::string> who;
  for (const auto& [t, name] : tokens_) {  // no early exit: time does not depend on which
    if (ConstantTimeEquals(t, token) && !who) who = name;
  }
  return who;
}

std::string PeerHost(const std::string& peer) {
  absl::string_view p = peer;
  if (size_t colon = p.find(':'); colon != absl::string_view::npos) p = p.substr(colon + 1);
  if (absl::StartsWith(p, "[")) {  // [::1]:port
    size_t end = p.find(']');
    return std::string(p.substr(0, end == absl::string_view::npos ? p.size() : end + 1));
  }
  if (size_t colon = p.rfind(':'); colon != absl::string_view::npos) p = p.substr(0, colon);
  return std::string(p);
}

}  // namespace apr::cluster
