#include "cluster/config.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "runtime/algorithm_constants.h"

namespace apr::cluster {
namespace {

using ::google::protobuf::Message;
using ::google::protobuf::TextFormat;
using Tree = TextFormat::ParseInfoTree;

// Collects parse errors as "source:line:column: message".
class Collector : public ::google::protobuf::io::ErrorCollector {
 public:
  explicit Collector(const std::string& source) : source_(source) {}
  void AddError(int line, int column, const std::string& message) override {
    errors_.push_back(absl::StrCat(source_, ":", line + 1, ":", column + 1, ": ", message));
  }
  std::vector<std::string> errors_;

 private:
  std::string source_;
};

struct Loc {
  int line = -1;
  int column = -1;
};

// Walks a parsed config beside its ParseInfoTree, so that each problem can name where
// the offending field (or, when it is missing, its enclosing message) was written.
class Checker {
 public:
  Checker(const std::string& source) : source_(source) {}

  // A nested message at `field` (index for repeated fields, -1 otherwise).
  struct Node {
    const Message* msg;
    const Tree* tree;  // may be null when the message was not written
    std::string path;
    Loc loc;  // where the message starts, or its parent's location
  };

  Node Child(const Node& n, const std::string& field, int index = -1) const {
    const auto* f = n.msg->GetDescriptor()->FindFieldByName(std::string(field));
    const auto* r = n.msg->GetReflection();
    Node c;
    c.msg = index < 0 ? &r->GetMessage(*n.msg, f) : &r->GetRepeatedMessage(*n.msg, f, index);
    c.tree = n.tree ? n.tree->GetTreeForNested(f, index) : nullptr;
    c.path = n.path.empty() ? std::string(field) : absl::StrCat(n.path, ".", field);
    if (index >= 0) absl::StrAppend(&c.path, "[", index, "]");
    c.loc = FieldLoc(n, field, index);
    return c;
  }

  // Where `field` of `n` was written, else where `n` was.
  Loc FieldLoc(const Node& n, const std::string& field, int index = -1) const {
    if (n.tree != nullptr) {
      const auto* f = n.msg->GetDescriptor()->FindFieldByName(std::string(field));
      if (f->is_repeated()) {  // a whole repeated field: its first entry, if any
        const int size = n.msg->GetReflection()->FieldSize(*n.msg, f);
        if (index < 0) index = 0;
        if (index >= size) return n.loc;
      }
      TextFormat::ParseLocation p = n.tree->GetLocation(f, index);
      if (p.line >= 0) return {p.line, p.column};
    }
    return n.loc;
  }

  void Error(const Node& n, const std::string& field, int index, const std::string& what) {
    Add(FieldLoc(n, field, index),
        absl::StrCat(n.path.empty() ? "" : absl::StrCat(n.path, "."), field, ": ", what));
  }
  void Error(const Node& n, const std::string& what) {
    Add(n.loc, absl::StrCat(n.path, ": ", what));
  }
  void Add(Loc loc, const std::string& what) {
    errors_.push_back(
        loc.line >= 0 ? absl::StrCat(source_, ":", loc.line + 1, ":", loc.column + 1, ": ", what)
                      : absl::StrCat(source_, ": ", what));
  }

  std::vector<std::string> errors_;

 private:
  std::string source_;
};

bool ValidPort(int p) { return p >= 0 && p <= 65535; }

struct PortUse {
  std::string what;
  Loc loc;
};

class ConfigChecker {
 public:
  ConfigChecker(const std::string& source, const ClusterConfig& c, const Tree& tree)
      : ck_(source), c_(c) {
    root_ = {&c, &tree, "", {}};
  }

  std::vector<std::string> Run() {
    CheckModel();
    CheckFrontEnd();
    CheckWorkers();
    CheckStorage();
    CheckRest();
    return std::move(ck_.errors_);
  }

 private:
  void CheckEndpoint(const Checker::Node& parent, const std::string& field,
                     const std::string& owner) {
    Checker::Node ep = ck_.Child(parent, field);
    const auto& e = static_cast<const v1::Endpoint&>(*ep.msg);
    if (e.host().empty()) ck_.Error(ep, "host", -1, "is empty");
    if (!ValidPort(e.port())) {
      ck_.Error(ep, "port", -1, absl::StrCat(e.port(), " is not a TCP port (0 to 65535)"));
    } else {
      UsePort(e.host(), e.port(), absl::StrCat(owner, " gRPC"), ck_.FieldLoc(ep, "port"));
    }
  }

  void CheckMetricsPort(const Checker::Node& n, const std::string& host, int port,
                        const std::string& owner) {
    if (!ValidPort(port)) {
      ck_.Error(n, "metrics_port", -1, absl::StrCat(port, " is not a TCP port (0 to 65535)"));
    } else {
      UsePort(host, port, absl::StrCat(owner, " metrics"), ck_.FieldLoc(n, "metrics_port"));
    }
  }

  // Fixed ports must not repeat on one host; port 0 (pick a free one) may.
  void UsePort(const std::string& host, int port, std::string what, Loc loc) {
    if (port == 0) return;
    auto [it, inserted] = ports_.emplace(HostPort(host, port), PortUse{what, loc});
    if (!inserted) {
      ck_.Add(loc, absl::StrCat(what, " port ", HostPort(host, port), " is already the ",
                                it->second.what, " port (line ", it->second.loc.line + 1, ")"));
    }
  }

  void CheckModel() {
    if (!c_.has_model() || c_.model().path().empty()) {
      ck_.Error(root_, "model", -1, "needs a path (model { path: \"models/apr-tiny\" })");
    }
  }

  void CheckFrontEnd() {
    if (!c_.has_frontend()) {
      ck_.Error(root_, "frontend", -1, "is missing");
      return;
    }
    Checker::Node fe = ck_.Child(root_, "frontend");
    if (!c_.frontend().has_grpc()) ck_.Error(fe, "grpc", -1, "is missing");
    CheckEndpoint(fe, "grpc", "frontend");
    CheckMetricsPort(fe, c_.frontend().grpc().host(), c_.frontend().metrics_port(), "frontend");
    if (c_.frontend().default_max_tokens() < 0) {
      ck_.Error(fe, "default_max_tokens", -1, "must be >= 0");
    }
    if (c_.frontend().has_tls()) CheckTls(ck_.Child(fe, "tls"), c_.frontend().tls(), true);
    if (c_.frontend().has_openai()) {
      Checker::Node oa = ck_.Child(fe, "openai");
      const int port = c_.frontend().openai().port();
      if (!ValidPort(port)) {
        ck_.Error(oa, "port", -1, absl::StrCat(port, " is not a TCP port (0 to 65535)"));
      } else {
        UsePort(c_.frontend().grpc().host(), port, "frontend openai", ck_.FieldLoc(oa, "port"));
      }
      if (c_.frontend().openai().max_body_bytes() < 0) {
        ck_.Error(oa, "max_body_bytes", -1, "must be >= 0");
      }
    }
    if (c_.frontend().has_auth() && c_.frontend().auth().tokens_file().empty()) {
      ck_.Error(ck_.Child(fe, "auth"), "tokens_file", -1, "is empty");
    }
    const v1::Limits& lim = c_.frontend().limits();
    Checker::Node ln = ck_.Child(fe, "limits");
    for (auto [name, v] :
         {std::pair<const char*, int>{"max_prompt_tokens", lim.max_prompt_tokens()},
          {"max_new_tokens", lim.max_new_tokens()},
          {"max_streams_per_client", lim.max_streams_per_client()},
          {"max_open_streams", lim.max_open_streams()},
          {"max_request_bytes", lim.max_request_bytes()}}) {
      if (v < 0) ck_.Error(ln, name, -1, "must be >= 0");
    }
  }

  // A listener needs a certificate and its key; mutual TLS needs the CA that verifies
  // the peers' certificates.
  void CheckTls(const Checker::Node& n, const v1::Tls& tls, bool server) {
    if (tls.cert_file().empty() != tls.key_file().empty()) {
      ck_.Error(n, tls.cert_file().empty() ? "cert_file" : "key_file", -1,
                "cert_file and key_file go together");
    }
    if (server && tls.cert_file().empty()) {
      ck_.Error(n, "cert_file", -1, "a TLS listener needs cert_file and key_file");
    }
    if (tls.require_client_cert() && tls.ca_file().empty()) {
      ck_.Error(n, "ca_file", -1, "require_client_cert needs ca_file to verify the clients");
    }
  }

  void CheckWorkers() {
    if (c_.worker_groups_size() == 0) {
      ck_.Error(root_, "worker_groups", -1, "needs at least one group");
    }
    std::map<std::string, int> names;
    for (int g = 0; g < c_.worker_groups_size(); ++g) {
      const v1::WorkerGroup& group = c_.worker_groups(g);
      Checker::Node gn = ck_.Child(root_, "worker_groups", g);
      if (group.name().empty()) {
        ck_.Error(gn, "name", -1, "is empty");
      } else if (!names.emplace(group.name(), g).second) {
        ck_.Error(gn, "name", -1,
                  absl::StrCat("\"", group.name(), "\" is already the name of worker_groups[",
                               names[group.name()], "]"));
      }
      if (group.ranks_size() == 0) ck_.Error(gn, "needs at least one rank");
      std::map<std::string, int> devices;
      for (int r = 0; r < group.ranks_size(); ++r) {
        const v1::WorkerRank& rank = group.ranks(r);
        Checker::Node rn = ck_.Child(gn, "ranks", r);
        const std::string owner = absl::StrCat("worker ", group.name(), "/", r);
        if (!IsValidDevice(rank.device())) {
          ck_.Error(rn, "device", -1,
                    absl::StrCat("\"", rank.device(), "\" is not cpu, auto or cuda:N"));
        } else if (group.ranks_size() > 1) {
          if (!absl::StartsWith(rank.device(), "cuda:")) {
            ck_.Error(rn, "device", -1,
                      "tensor parallelism needs one GPU per rank (cuda:N), not \"" + rank.device() +
                          "\"");
          } else if (!devices.emplace(rank.device(), r).second) {
            ck_.Error(
                rn, "device", -1,
                absl::StrCat(rank.device(), " is already rank ", devices[rank.device()], "'s GPU"));
          }
        }
        if (!rank.has_grpc()) ck_.Error(rn, "grpc", -1, "is missing");
        CheckEndpoint(rn, "grpc", owner);
        CheckMetricsPort(rn, rank.grpc().host(), rank.metrics_port(), owner);
      }
    }
  }

  void CheckStorage() {
    std::map<std::string, int> names;
    for (int i = 0; i < c_.storage_nodes_size(); ++i) {
      const v1::StorageNode& node = c_.storage_nodes(i);
      Checker::Node n = ck_.Child(root_, "storage_nodes", i);
      if (node.name().empty()) {
        ck_.Error(n, "name", -1, "is empty");
      } else if (!names.emplace(node.name(), i).second) {
        ck_.Error(n, "name", -1,
                  absl::StrCat("\"", node.name(), "\" is already the name of storage_nodes[",
                               names[node.name()], "]"));
      }
      if (!node.has_grpc()) ck_.Error(n, "grpc", -1, "is missing");
      CheckEndpoint(n, "grpc", absl::StrCat("storage node ", node.name()));
      if (node.pool_bytes() < 0) ck_.Error(n, "pool_bytes", -1, "must be >= 0");
    }
    const bool remote = c_.kv_cache().placement() == v1::KvCache::PLACEMENT_REMOTE;
    if (remote && c_.storage_nodes_size() == 0) {
      ck_.Error(ck_.Child(root_, "kv_cache"), "placement", -1,
                "PLACEMENT_REMOTE needs storage_nodes");
    }
    const bool named = std::any_of(c_.worker_groups().begin(), c_.worker_groups().end(),
                                   [](const v1::WorkerGroup& g) { return g.storage_nodes_size(); });
    if (named) CheckGroupNodes(names);
    if (remote && !named && c_.storage_nodes_size() > 0 &&
        c_.storage_nodes_size() != c_.worker_groups_size()) {
      ck_.Error(
          root_, "storage_nodes", 0,
          absl::StrCat("worker group i keeps its KV cache on storage node i: ",
                       c_.worker_groups_size(), " worker group(s) need ", c_.worker_groups_size(),
                       " storage node(s), the config has ", c_.storage_nodes_size(),
                       " (to shard a group's KV cache over several, list them in its "
                       "storage_nodes)"));
    }
    if (!remote && c_.storage_nodes_size() > 0) {
      ck_.Error(root_, "storage_nodes", 0,
                "storage nodes are used only with kv_cache { placement: PLACEMENT_REMOTE }");
    }
  }

  // Groups that name their nodes (sharded KV): every group names at least one, each name
  // is a storage node, and every node belongs to exactly one group.
  void CheckGroupNodes(const std::map<std::string, int>& nodes) {
    std::map<std::string, int> owner;  // node name -> group
    for (int g = 0; g < c_.worker_groups_size(); ++g) {
      const v1::WorkerGroup& group = c_.worker_groups(g);
      Checker::Node gn = ck_.Child(root_, "worker_groups", g);
      if (group.storage_nodes_size() == 0) {
        ck_.Error(gn, "storage_nodes", -1,
                  "is empty, but other worker groups name their storage nodes: name this "
                  "group's too");
      }
      if (group.storage_nodes_size() > kMaxNodesPerGroup) {
        ck_.Error(gn, "storage_nodes", kMaxNodesPerGroup,
                  absl::StrCat("a group shards its KV cache over at most ", kMaxNodesPerGroup,
                               " storage nodes, not ", group.storage_nodes_size()));
      }
      for (int k = 0; k < group.storage_nodes_size(); ++k) {
        const std::string& name = group.storage_nodes(k);
        if (!nodes.count(name)) {
          ck_.Error(gn, "storage_nodes", k,
                    absl::StrCat("\"", name, "\" is not the name of a storage node"));
        } else if (auto [it, fresh] = owner.emplace(name, g); !fresh) {
          ck_.Error(gn, "storage_nodes", k,
                    absl::StrCat("\"", name, "\" is already a node of worker_groups[", it->second,
                                 "] (", c_.worker_groups(it->second).name(), ")"));
        }
      }
    }
    for (int i = 0; i < c_.storage_nodes_size(); ++i) {
      const std::string& name = c_.storage_nodes(i).name();
      if (!name.empty() && !owner.count(name)) {
        ck_.Error(
            ck_.Child(root_, "storage_nodes", i), "name", -1,
            absl::StrCat("\"", name, "\" is in no worker group's storage_nodes (it would idle)"));
      }
    }
  }

  void CheckRest() {
    Checker::Node s = ck_.Child(root_, "scheduler");
    if (c_.scheduler().max_batch_size() < 0) ck_.Error(s, "max_batch_size", -1, "must be >= 0");
    if (c_.scheduler().max_queue_size() < 0) ck_.Error(s, "max_queue_size", -1, "must be >= 0");
    if (c_.scheduler().prefill_chunk_tokens() < -1) {
      ck_.Error(s, "prefill_chunk_tokens", -1, "must be >= -1 (-1: whole prompts)");
    }
    const double share = c_.scheduler().max_prefill_share();
    if (share < 0 || share > 1 || share != share) {
      ck_.Error(s, "max_prefill_share", -1, "must be in (0, 1] (0 means the default, 0.25)");
    }
    Checker::Node l = ck_.Child(root_, "launcher");
    if (c_.launcher().startup_timeout_seconds() < 0) {
      ck_.Error(l, "startup_timeout_seconds", -1, "must be >= 0");
    }
    if (c_.launcher().stop_timeout_seconds() < 0) {
      ck_.Error(l, "stop_timeout_seconds", -1, "must be >= 0");
    }
    for (const auto& [kind, path] : c_.launcher().binaries()) {
      if (kind != "frontend" && kind != "worker" && kind != "storage_node") {
        ck_.Error(
            l, "binaries", -1,
            absl::StrCat("unknown process kind \"", kind, "\" (frontend, worker or storage_node)"));
      }
    }
    if (c_.has_internal_tls()) {
      Checker::Node t = ck_.Child(root_, "internal_tls");
      CheckTls(t, c_.internal_tls(), true);
      if (c_.internal_tls().ca_file().empty()) {
        ck_.Error(t, "ca_file", -1, "mutual TLS between cluster processes needs ca_file");
      }
    }
    Checker::Node kv = ck_.Child(root_, "kv_cache");
    if (c_.kv_cache().budget_tokens() < 0) ck_.Error(kv, "budget_tokens", -1, "must be >= 0");
    if (c_.kv_cache().dense_layers() < 0) ck_.Error(kv, "dense_layers", -1, "must be >= 0");
    if (c_.kv_cache().selection() == v1::KvCache::SELECTION_PREDICTOR_HYBRID &&
        c_.kv_cache().placement() == v1::KvCache::PLACEMENT_REMOTE) {
      ck_.Error(kv, "selection", -1,
                "SELECTION_PREDICTOR_HYBRID needs the KV cache on the GPU or in host RAM: with "
                "PLACEMENT_REMOTE the query's blocks would be fetched from a storage node "
                "inside the step");
    }
    CheckReplication();
    CheckStorageSecurity();
  }

  // Two copies of a group's KV live on the two halves of its storage nodes
  // (docs/KVSTORE.md "Replication").
  void CheckReplication() {
    Checker::Node kv = ck_.Child(root_, "kv_cache");
    const int rep = c_.kv_cache().replication();
    if (rep < 0 || rep > 2) {
      ck_.Error(kv, "replication", -1,
                absl::StrCat("must be 0 or 1 (one copy) or 2 (two copies), not ", rep));
      return;
    }
    if (rep < 2) return;
    if (c_.kv_cache().placement() != v1::KvCache::PLACEMENT_REMOTE) {
      ck_.Error(kv, "replication", -1,
                "2 needs placement PLACEMENT_REMOTE (the copies live on storage nodes)");
      return;
    }
    for (int g = 0; g < c_.worker_groups_size(); ++g) {
      const size_t n = GroupStorageNodes(c_, g).size();
      if (n % 2 == 0 && n > 0) continue;
      ck_.Error(kv, "replication", -1,
                absl::StrCat("2 splits each worker group's storage nodes into two halves, one "
                             "copy each, so a group needs an even number of them: "
                             "worker_groups[",
                             g, "] (", c_.worker_groups(g).name(), ") has ", n,
                             " (list them in its storage_nodes)"));
    }
  }

  // Either side of the storage nodes' TLS is mutual: all three files, or none.
  void CheckStorageSecurity() {
    if (!c_.has_storage_security()) return;
    Checker::Node s = ck_.Child(root_, "storage_security");
    const v1::StorageSecurity& sec = c_.storage_security();
    if (c_.storage_nodes_size() == 0) {
      ck_.Error(root_, "storage_security", -1, "is set but the config names no storage_nodes");
    }
    auto set = [](const v1::Tls& t) {
      return !t.cert_file().empty() || !t.key_file().empty() || !t.ca_file().empty();
    };
    const bool node = set(sec.node_tls()), worker = set(sec.worker_tls());
    if (node != worker) {
      ck_.Error(s, node ? "worker_tls" : "node_tls", -1,
                "the nodes serve mutual TLS only: set node_tls and worker_tls together");
    }
    for (const auto& [field, tls] :
         {std::pair<const char*, const v1::Tls*>{"node_tls", &sec.node_tls()},
          {"worker_tls", &sec.worker_tls()}}) {
      if (!set(*tls)) continue;
      if (tls->cert_file().empty() || tls->key_file().empty() || tls->ca_file().empty()) {
        ck_.Error(ck_.Child(s, field), "cert_file", -1,
                  "mutual TLS needs cert_file, key_file and ca_file");
      }
    }
  }

  Checker ck_;
  const ClusterConfig& c_;
  Checker::Node root_;
  std::map<std::string, PortUse> ports_;
};

void FillDefaults(ClusterConfig& c) {
  if (c.frontend().default_max_tokens() == 0) c.mutable_frontend()->set_default_max_tokens(128);
  if (c.scheduler().max_batch_size() == 0) c.mutable_scheduler()->set_max_batch_size(8);
  if (c.scheduler().max_queue_size() == 0) c.mutable_scheduler()->set_max_queue_size(1024);
  if (c.scheduler().prefill_chunk_tokens() == 0) {
    c.mutable_scheduler()->set_prefill_chunk_tokens(2048);
  }
  if (c.scheduler().max_prefill_share() == 0) c.mutable_scheduler()->set_max_prefill_share(0.25);
  if (c.launcher().startup_timeout_seconds() == 0) {
    c.mutable_launcher()->set_startup_timeout_seconds(120);
  }
  if (c.launcher().stop_timeout_seconds() == 0) c.mutable_launcher()->set_stop_timeout_seconds(10);
  if (c.kv_cache().budget_tokens() == 0)
    c.mutable_kv_cache()->set_budget_tokens(kDefaultBudgetTokens);
  v1::Limits* lim = c.mutable_frontend()->mutable_limits();
  if (lim->max_streams_per_client() == 0) lim->set_max_streams_per_client(256);
  if (lim->max_open_streams() == 0) lim->set_max_open_streams(4096);
  if (lim->max_request_bytes() == 0) lim->set_max_request_bytes(4 << 20);
}

}  // namespace

absl::StatusOr<ClusterConfig> ParseConfig(std::string_view text, std::string_view source_view) {
  const std::string source(source_view);
  ClusterConfig config;
  Tree tree;
  Collector collector(source);
  TextFormat::Parser parser;
  parser.RecordErrorsTo(&collector);
  parser.WriteLocationsTo(&tree);
  if (!parser.ParseFromString(std::string(text), &config)) {
    if (collector.errors_.empty())
      collector.errors_.push_back(absl::StrCat(source, ": bad config"));
    return absl::InvalidArgumentError(absl::StrJoin(collector.errors_, "\n"));
  }
  std::vector<std::string> errors = ConfigChecker(source, config, tree).Run();
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  FillDefaults(config);
  return config;
}

absl::StatusOr<ClusterConfig> LoadConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read config ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseConfig(ss.str(), path);
}

std::string ConfigToText(const ClusterConfig& config) {
  std::string text;
  TextFormat::PrintToString(config, &text);
  return absl::StrCat(
      "# proto-file: cluster/config.proto\n# proto-message: apr.cluster.v1.ClusterConfig\n", text);
}

bool IsLoopback(std::string_view host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.starts_with("127.");
}

std::string HostPort(std::string_view host, int port) {
  const bool v6 = host.find(':') != std::string_view::npos && !host.starts_with("[");
  return v6 ? absl::StrCat("[", std::string(host), "]:", port)
            : absl::StrCat(std::string(host), ":", port);
}

bool IsValidDevice(std::string_view device) {
  if (device == "cpu" || device == "auto") return true;
  if (!device.starts_with("cuda:") || device.size() == 5) return false;
  for (char ch : device.substr(5)) {
    if (ch < '0' || ch > '9') return false;
  }
  return true;
}

std::vector<std::string> GroupStorageNodes(const ClusterConfig& config, int group) {
  std::vector<std::string> out;
  const v1::WorkerGroup& g = config.worker_groups(group);
  for (const std::string& name : g.storage_nodes()) {
    for (const v1::StorageNode& node : config.storage_nodes()) {
      if (node.name() == name) out.push_back(HostPort(node.grpc().host(), node.grpc().port()));
    }
  }
  if (g.storage_nodes_size() == 0 && group < config.storage_nodes_size()) {
    const v1::StorageNode& node = config.storage_nodes(group);
    out.push_back(HostPort(node.grpc().host(), node.grpc().port()));
  }
  return out;
}

}  // namespace apr::cluster
