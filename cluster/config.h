// Cluster configs: protobuf text format files checked against cluster/config.proto.
#ifndef APRUNTIME_CLUSTER_CONFIG_H_
#define APRUNTIME_CLUSTER_CONFIG_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "cluster/config.pb.h"

namespace apr::cluster {

using ClusterConfig = ::apr::cluster::v1::ClusterConfig;

// Parses `text` and checks it; `source` names the file in messages. Every problem is
// reported, one per line, as "source:line:column: field.path: what is wrong" (1-based).
// Unset values get their documented defaults (max_batch_size 8, timeouts, ...).
absl::StatusOr<ClusterConfig> ParseConfig(std::string_view text, std::string_view source);

// Reads the file and parses it.
absl::StatusOr<ClusterConfig> LoadConfig(const std::string& path);

// Text format, with a header naming the schema (for the launcher's resolved config).
std::string ConfigToText(const ClusterConfig& config);

// 127.0.0.1 (any 127.x.y.z), localhost or ::1.
bool IsLoopback(std::string_view host);

// "host:port", with brackets around an IPv6 host.
std::string HostPort(std::string_view host, int port);

// "cpu", "auto" or "cuda:N".
bool IsValidDevice(std::string_view device);

// Most storage nodes one worker group shards its KV cache over (the node's index lives in
// 4 bits of a slot: kvstore::ShardedTier::kMaxShards).
constexpr int kMaxNodesPerGroup = 16;

// "host:port" of each storage node worker group `group` keeps its KV cache on under
// PLACEMENT_REMOTE: the nodes it names (WorkerGroup.storage_nodes), else storage node
// `group`, else none.
std::vector<std::string> GroupStorageNodes(const ClusterConfig& config, int group);

}  // namespace apr::cluster

#endif  // APRUNTIME_CLUSTER_CONFIG_H_
