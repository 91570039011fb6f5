#include "cluster/launcher.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <stdlib.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "cluster/model_check.h"
#include "cluster/security.h"
#include "cluster/serving.h"
#include "rpc/generation/v1/generation.grpc.pb.h"
#include "runtime/model_path.h"

namespace apr::cluster {

namespace fs = std::filesystem;
namespace gv1 = ::apr::generation::v1;

namespace {

// A storage node's pool when the config gives no pool_bytes.
constexpr int64_t kDefaultPoolBytes = int64_t{1} << 30;

std::string Flag(const std::string& name, const std::string& value) {
  return absl::StrCat("--", name, "=", value);
}
std::string Flag(const std::string& name, int64_t value) {
  return absl::StrCat("--", name, "=", value);
}

std::string ReadyFile(const std::string& run_dir, std::string name) {
  for (char& c : name) {
    if (c == '/') c = '-';
  }
  return (fs::path(run_dir) / (name + ".ready")).string();
}

absl::Status CheckLoopback(const std::string& name, const std::string& host) {
  if (IsLoopback(host)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(name, " listens on ", host,
                   ": launch starts processes on this host only and they "
                   "listen on loopback (127.0.0.1); for several hosts see deploy/"));
}

// "worker g0/1", "storage_node kv0", "frontend".
std::string Who(const ProcessSpec& p) {
  return p.kind == p.name ? p.kind : absl::StrCat(p.kind, " ", p.name);
}

}  // namespace

Launcher::Launcher(ClusterConfig config, LauncherOptions options)
    : config_(std::move(config)), options_(std::move(options)) {}

Launcher::~Launcher() { Stop().IgnoreError(); }

std::string Launcher::BinaryFor(const std::string& kind) const {
  auto it = config_.launcher().binaries().find(kind);
  if (it != config_.launcher().binaries().end()) return ResolveModelDir(it->second);
  if (kind == "storage_node") {
    return (fs::path(options_.bin_dir) / ".." / "kvstore" / "storage_node").lexically_normal();
  }
  return (fs::path(options_.bin_dir) / kind).string();
}

void Launcher::AddStorageSecurityFlags(bool node, std::vector<std::string>* flags) const {
  if (!config_.has_storage_security()) return;
  const v1::StorageSecurity& sec = config_.storage_security();
  // The node's flags are --tls_*, the worker's --kv_tls_* (its --tls_* are the Worker API's).
  const std::string prefix = node ? "" : "kv_";
  const TlsConfig tls = ResolveTlsPaths(node ? sec.node_tls() : sec.worker_tls());
  if (TlsEnabled(tls)) {
    flags->push_back(Flag(prefix + "tls_cert", tls.cert_file()));
    flags->push_back(Flag(prefix + "tls_key", tls.key_file()));
    flags->push_back(Flag(prefix + "tls_ca", tls.ca_file()));
    if (!node && !tls.server_name().empty()) {
      flags->push_back(Flag("kv_tls_server_name", tls.server_name()));
    }
  }
  if (!sec.auth_token_file().empty()) {
    const fs::path token = fs::absolute(ResolveModelDir(sec.auth_token_file()));  // as TLS paths
    flags->push_back(Flag(prefix + "auth_token_file", token.string()));
  }
}

absl::StatusOr<std::vector<ProcessSpec>> Launcher::PlanProcesses(const std::string& run_dir) const {
  // What the workers would refuse is refused here, before any process starts (and by
  // `launch --check`, which plans without starting).
  APR_RETURN_IF_ERROR(CheckConfigAgainstModel(config_));
  std::vector<ProcessSpec> plan;
  for (const auto& node : config_.storage_nodes()) {
    APR_RETURN_IF_ERROR(CheckLoopback("storage node " + node.name(), node.grpc().host()));
    // The node's blocks are the GPU workers' (bf16, head_dim from the model's
    // config.json, which the node reads itself) unless the config's extra flags say
    // otherwise.
    bool has_geometry = false;
    for (const auto& f : node.extra_flags()) {
      has_geometry |= absl::StartsWith(f, "--block_bytes") || absl::StartsWith(f, "--head_dim") ||
                      absl::StartsWith(f, "--model");
    }
    ProcessSpec p{
        "storage_node",     node.name(),       {}, ReadyFile(run_dir, "storage-" + node.name()),
        node.grpc().host(), node.grpc().port()};
    p.flags = {
        Flag("node_name", node.name()), Flag("grpc_host", node.grpc().host()),
        Flag("grpc_port", node.grpc().port()),
        Flag("capacity_bytes", node.pool_bytes() > 0 ? node.pool_bytes() : kDefaultPoolBytes),
        Flag("ready_file", p.ready_file)};
    if (!has_geometry) {
      p.flags.push_back(
          Flag("model", fs::absolute(ResolveModelDir(config_.model().path())).string()));
      p.flags.push_back(Flag("dtype", "bf16"));
    }
    AddStorageSecurityFlags(/*node=*/true, &p.flags);
    for (const auto& f : node.extra_flags()) p.flags.push_back(f);
    plan.push_back(std::move(p));
  }
  for (const auto& group : config_.worker_groups()) {
    for (int r = 0; r < group.ranks_size(); ++r) {
      const auto& rank = group.ranks(r);
      const std::string name = absl::StrCat(group.name(), "/", r);
      APR_RETURN_IF_ERROR(CheckLoopback("worker " + name, rank.grpc().host()));
      ProcessSpec p{
          "worker",          name, {}, ReadyFile(run_dir, "worker-" + name), rank.grpc().host(),
          rank.grpc().port()};
      p.flags = {Flag("name", name),
                 Flag("host", rank.grpc().host()),
                 Flag("grpc_port", rank.grpc().port()),
                 Flag("metrics_port", rank.metrics_port()),
                 Flag("device", rank.device()),
                 Flag("ready_file", p.ready_file)};
      for (const auto& f : rank.extra_flags()) p.flags.push_back(f);
      AddStorageSecurityFlags(/*node=*/false, &p.flags);
      if (config_.has_internal_tls()) {
        const TlsConfig tls = ResolveTlsPaths(config_.internal_tls());
        p.flags.push_back(Flag("tls_cert_file", tls.cert_file()));
        p.flags.push_back(Flag("tls_key_file", tls.key_file()));
        p.flags.push_back(Flag("tls_ca_file", tls.ca_file()));
      }
      plan.push_back(std::move(p));
    }
  }
  const auto& fe = config_.frontend();
  APR_RETURN_IF_ERROR(CheckLoopback("the front end", fe.grpc().host()));
  ProcessSpec p{"frontend",       "frontend",      {}, ReadyFile(run_dir, "frontend"),
                fe.grpc().host(), fe.grpc().port()};
  p.flags = {Flag("config", (fs::path(run_dir) / "cluster.textproto").string()),
             Flag("ready_file", p.ready_file)};
  plan.push_back(std::move(p));
  return plan;
}

absl::Status Launcher::StartOne(ProcessSpec spec) {
  std::vector<std::string> argv = {BinaryFor(spec.kind)};
  argv.insert(argv.end(), spec.flags.begin(), spec.flags.end());
  if (!spec.ready_file.empty()) fs::remove(spec.ready_file);
  auto process = Process::Start(argv);
  if (!process.ok()) {
    return absl::Status(process.status().code(),
                        absl::StrCat(spec.kind, " ", spec.name, ": ", process.status().message()));
  }
  running_.push_back(std::make_unique<Running>(Running{std::move(spec), *process, {}}));
  return absl::OkStatus();
}

absl::Status Launcher::AwaitReady(Running& r, absl::Time deadline) {
  const std::string who = Who(r.spec);
  while (true) {
    if (auto status = r.process.Poll()) {
      return absl::UnavailableError(absl::StrCat(who, " ", DescribeWaitStatus(*status),
                                                 " while starting (its output is above)"));
    }
    if (!r.spec.ready_file.empty()) {
      auto ports = ReadReadyFile(r.spec.ready_file);
      if (ports.ok()) {
        r.ports = *ports;
        return absl::OkStatus();
      }
    } else {
      // No ready file: ready once the gRPC port accepts connections.
      auto channel = grpc::CreateChannel(HostPort(r.spec.host, r.spec.grpc_port),
                                         grpc::InsecureChannelCredentials());
      if (channel->WaitForConnected(std::chrono::system_clock::now() +
                                    std::chrono::milliseconds(200))) {
        r.ports["grpc_port"] = r.spec.grpc_port;
        return absl::OkStatus();
      }
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(who, " did not get ready in ",
                                                      config_.launcher().startup_timeout_seconds(),
                                                      " s (launcher.startup_timeout_seconds)"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

absl::Status Launcher::AwaitServing(Running& frontend, absl::Time deadline) {
  // TLS to the front end: its listener's CA (or the cluster's) verifies it; the cluster's
  // certificate is presented in case the listener requires one.
  TlsConfig tls;
  if (TlsEnabled(config_.frontend().tls())) {
    tls = ResolveTlsPaths(config_.internal_tls());
    const TlsConfig fe = ResolveTlsPaths(config_.frontend().tls());
    if (!fe.ca_file().empty()) tls.set_ca_file(fe.ca_file());
    if (!fe.server_name().empty()) tls.set_server_name(fe.server_name());
    if (tls.ca_file().empty()) {
      return absl::InvalidArgumentError(
          "frontend.tls: the launcher needs ca_file (here or in internal_tls) to check the "
          "front end's certificate");
    }
  }
  auto channel = MakeChannel(frontend_address_, tls);
  if (!channel.ok()) return channel.status();
  auto stub = gv1::Generation::NewStub(*channel);
  std::string last = "no answer";
  while (true) {
    if (auto status = frontend.process.Poll()) {
      return absl::UnavailableError(absl::StrCat("frontend ", DescribeWaitStatus(*status),
                                                 " while loading the workers (its output is "
                                                 "above)"));
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
    gv1::HealthResponse health;
    grpc::Status s = stub->Health(&ctx, gv1::HealthRequest(), &health);
    if (s.ok()) {
      if (health.status() == gv1::HealthResponse::STATUS_SERVING) return absl::OkStatus();
      last =
          absl::StrCat(gv1::HealthResponse::Status_Name(health.status()), ": ", health.message());
    } else {
      last = s.error_message();
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat("the front end did not start serving in ",
                                                      config_.launcher().startup_timeout_seconds(),
                                                      " s (last health: ", last, ")"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

void Launcher::ResolvePorts() {
  for (const auto& r : running_) {
    if (r->spec.kind != "storage_node") continue;
    for (auto& node : *config_.mutable_storage_nodes()) {
      if (node.name() == r->spec.name) node.mutable_grpc()->set_port(r->ports["grpc_port"]);
    }
  }
  for (const auto& r : running_) {
    if (r->spec.kind != "worker") continue;
    for (auto& group : *config_.mutable_worker_groups()) {
      for (int i = 0; i < group.ranks_size(); ++i) {
        if (absl::StrCat(group.name(), "/", i) != r->spec.name) continue;
        auto* rank = group.mutable_ranks(i);
        rank->mutable_grpc()->set_port(r->ports["grpc_port"]);
        rank->set_metrics_port(r->ports["metrics_port"]);
      }
    }
  }
}

absl::Status Launcher::Prepare() {
  if (plan_.has_value()) return absl::OkStatus();
  // Every child inherits this: NVLink multicast stays off in NCCL, PyTorch and NVSHMEM (a
  // value the caller set explicitly is kept).
  setenv("NCCL_NVLS_ENABLE", "0", 0);
  setenv("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1", 0);
  setenv("NVSHMEM_DISABLE_NVLS", "1", 0);
  if (options_.run_dir.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "apr-launch-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) {
      return absl::InternalError(absl::StrCat("mkdtemp ", tmpl, ": ", strerror(errno)));
    }
    options_.run_dir = tmpl;
    own_run_dir_ = true;
  } else if (std::error_code ec; !fs::create_directories(options_.run_dir, ec) && ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot make the run directory ", options_.run_dir, ": ", ec.message()));
  }
  auto plan = PlanProcesses(options_.run_dir);
  if (!plan.ok()) return plan.status();
  plan_ = *std::move(plan);
  deadline_ = absl::Now() + absl::Seconds(config_.launcher().startup_timeout_seconds());
  return absl::OkStatus();
}

absl::Status Launcher::StartKind(const std::string& kind) {
  const size_t first = running_.size();
  for (const ProcessSpec& p : *plan_) {
    if (p.kind != kind) continue;
    APR_RETURN_IF_ERROR(StartOne(p));
  }
  for (size_t i = first; i < running_.size(); ++i) {
    APR_RETURN_IF_ERROR(AwaitReady(*running_[i], deadline_));
  }
  return absl::OkStatus();
}

absl::Status Launcher::StartStorageNodes() {
  if (storage_started_) return absl::OkStatus();
  absl::Status status = Prepare();
  if (status.ok()) status = StartKind("storage_node");
  if (!status.ok()) {
    Stop().IgnoreError();
    return status;
  }
  storage_started_ = true;
  ResolvePorts();
  return absl::OkStatus();
}

std::vector<std::string> Launcher::storage_node_addresses() const {
  std::vector<std::string> out;
  for (const auto& node : config_.storage_nodes()) {
    out.push_back(HostPort(node.grpc().host(), node.grpc().port()));
  }
  return out;
}

absl::Status Launcher::Start() {
  APR_RETURN_IF_ERROR(StartStorageNodes());
  const absl::Time deadline = deadline_;
  absl::Status status = [&]() -> absl::Status {
    // Storage nodes (above), then all workers at once (they load in parallel), then the
    // front end.
    APR_RETURN_IF_ERROR(StartKind("worker"));
    // The front end reads the config with every port the workers picked filled in and
    // the model path made absolute.
    ResolvePorts();
    config_.mutable_model()->set_path(fs::absolute(ResolveModelDir(config_.model().path())));
    if (config_.has_internal_tls()) {
      *config_.mutable_internal_tls() = ResolveTlsPaths(config_.internal_tls());
    }
    if (config_.frontend().has_tls()) {
      *config_.mutable_frontend()->mutable_tls() = ResolveTlsPaths(config_.frontend().tls());
    }
    if (config_.frontend().has_auth()) {
      config_.mutable_frontend()->mutable_auth()->set_tokens_file(
          fs::absolute(ResolveModelDir(config_.frontend().auth().tokens_file())).string());
    }
    {
      std::ofstream out(fs::path(options_.run_dir) / "cluster.textproto");
      out << ConfigToText(config_);
      if (!out.flush()) return absl::InternalError("cannot write the resolved config");
    }
    APR_RETURN_IF_ERROR(StartOne(plan_->back()));
    Running& fe = *running_.back();
    APR_RETURN_IF_ERROR(AwaitReady(fe, deadline));
    const std::string host = config_.frontend().grpc().host();
    frontend_port_ = fe.ports["grpc_port"];
    metrics_port_ = fe.ports["metrics_port"];
    frontend_address_ = HostPort(host, frontend_port_);
    metrics_address_ = HostPort(host, metrics_port_);
    if (fe.ports.count("openai_port")) {
      openai_port_ = fe.ports["openai_port"];
      openai_address_ = HostPort(host, openai_port_);
    }
    return AwaitServing(fe, deadline);
  }();
  if (!status.ok()) Stop().IgnoreError();
  return status;
}

int Launcher::WaitForSignalOrExit() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  const timespec tick = {0, 200 * 1000 * 1000};
  while (true) {
    const int sig = sigtimedwait(&set, nullptr, &tick);
    if (sig > 0) return sig;
    for (const auto& r : running_) {
      if (r->process.exited()) continue;  // a worker already reported below
      if (auto status = r->process.Poll()) {
        failure_ = absl::StrCat(Who(r->spec), " ", DescribeWaitStatus(*status));
        if (r->spec.kind == "worker" && config_.launcher().keep_serving_after_worker_exit()) {
          std::fprintf(stderr, "launch: %s; the front end serves on the other workers\n",
                       failure_.c_str());
          continue;
        }
        return -1;
      }
    }
  }
}

absl::Status Launcher::Stop() {
  if (stopped_) return absl::OkStatus();
  stopped_ = true;
  const absl::Duration grace = absl::Seconds(config_.launcher().stop_timeout_seconds());
  std::vector<std::string> problems;
  // Reverse start order, a kind at a time: the front end stops admitting and ends its
  // streams before the workers under it go; storage nodes go last.
  for (const std::string kind : {"frontend", "worker", "storage_node"}) {
    std::vector<Running*> batch;
    for (auto& r : running_) {
      if (r->spec.kind == kind) batch.push_back(r.get());
    }
    for (Running* r : batch) r->process.Signal(SIGTERM);
    const absl::Time deadline = absl::Now() + grace;
    for (Running* r : batch) {
      std::optional<int> status =
          r->process.Wait(std::max(deadline - absl::Now(), absl::ZeroDuration()));
      const std::string who = Who(r->spec);
      if (!status) {
        r->process.Signal(SIGKILL);
        r->process.Wait(absl::Seconds(5));
        problems.push_back(absl::StrCat(who, " did not stop within ", absl::FormatDuration(grace),
                                        " of SIGTERM; killed"));
      } else if (!(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) &&
                 !(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGTERM)) {
        problems.push_back(absl::StrCat(who, " ", DescribeWaitStatus(*status)));
      }
    }
  }
  if (own_run_dir_) {
    std::error_code ec;
    fs::remove_all(options_.run_dir, ec);
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::InternalError(absl::StrJoin(problems, "; "));
}

}  // namespace apr::cluster
