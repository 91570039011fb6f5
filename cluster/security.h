// Transport security and client identity for the cluster's gRPC endpoints
// (docs/RELIABILITY.md): TLS credentials from the PEM files a config names (cluster/
// config.proto, Tls), and the bearer tokens of the Generation API (Auth).
#ifndef APRUNTIME_CLUSTER_SECURITY_H_
#define APRUNTIME_CLUSTER_SECURITY_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "cluster/config.h"

namespace apr::cluster {

using TlsConfig = ::apr::cluster::v1::Tls;

// True when `tls` names a certificate or a CA (a TLS side is configured).
bool TlsEnabled(const TlsConfig& tls);

// Insecure credentials when TLS is not configured; otherwise SSL credentials from the
// files (which must be readable: NotFound naming the file and the field).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsConfig& tls);
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsConfig& tls);

// A channel to `address` with `tls` (server_name becomes the TLS target name override)
// and the given channel arguments.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address,
                                                            const TlsConfig& tls,
                                                            grpc::ChannelArguments args = {});

// The config's paths made absolute (as Model.path is resolved), so that processes
// started elsewhere read the same files.
TlsConfig ResolveTlsPaths(const TlsConfig& tls);

// Bearer tokens read from an Auth.tokens_file. Tokens are compared in constant time and
// never logged; a caller is known by its client name.
class TokenSet {
 public:
  static absl::StatusOr<TokenSet> Load(const std::string& path);
  static TokenSet FromLines(const std::string& text);
  // The client name for the "authorization" metadata value ("Bearer <token>"), or
  // nothing when it is missing, malformed or unknown.
  std::optional<std::string> Check(std::string_view authorization) const;
  size_t size() const { return tokens_.size(); }

 private:
  std::vector<std::pair<std::string, std::string>> tokens_;  // (token, client name)
};

// "ipv4:127.0.0.1:5555" -> "127.0.0.1" (gRPC's peer string without the port).
std::string PeerHost(const std::string& peer);

}  // namespace apr::cluster

#endif  // APRUNTIME_CLUSTER_SECURITY_H_
