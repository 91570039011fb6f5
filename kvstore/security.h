// Security of the storage node's control plane (docs/KVSTORE.md "Security"): mutual-TLS
// credentials from PEM files and the shared bearer token, for both the node and its
// clients. Separate from cluster/security.h because kvstore/ depends on runtime/ only.
#ifndef APRUNTIME_KVSTORE_SECURITY_H_
#define APRUNTIME_KVSTORE_SECURITY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace apr::kvstore {

// PEM files of one side of a mutual-TLS connection. Node: its certificate and key, and
// the CA client certificates must chain to. Client: its certificate and key, and the CA
// that signed the node's certificate. All empty: plaintext.
struct TlsFiles {
  std::string cert_file;
  std::string key_file;
  std::string ca_file;
  // Client side: the name checked against the node's certificate instead of the host
  // dialled (e.g. "localhost"); empty: the host dialled.
  std::string server_name;

  bool enabled() const { return !cert_file.empty() || !key_file.empty() || !ca_file.empty(); }
};

// The metadata naming a client (decimal uint64, random per RemoteTier): leases renew by
// it, and without TLS, with a token, it tells the token's holders apart.
inline constexpr char kOwnerMetadata[] = "apr-kv-owner";
// The metadata carrying the token, as "Bearer <token>".
inline constexpr char kAuthorizationMetadata[] = "authorization";
inline constexpr char kBearerPrefix[] = "Bearer ";

// Insecure credentials when `tls` is empty; otherwise TLS that requires a client
// certificate signed by ca_file and verifies it (all three files are needed: the node
// never serves TLS without checking its clients).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> NodeServerCredentials(const TlsFiles& tls);
// Insecure credentials when `tls` is empty; otherwise TLS verifying the node against
// ca_file and presenting cert_file/key_file (all three needed).
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> NodeChannelCredentials(
    const TlsFiles& tls);

// The token in `path` (the file without surrounding whitespace). An unreadable or empty
// file, or one with whitespace inside the token, is an error naming the file; the token
// itself is never part of a message.
absl::StatusOr<std::string> ReadAuthToken(const std::string& path);

// Whether `given` equals `secret`, in time that depends on the secret's length only.
bool ConstantTimeEquals(absl::string_view given, absl::string_view secret);

}  // namespace apr::kvstore

#endif  // APRUNTIME_KVSTORE_SECURITY_H_
