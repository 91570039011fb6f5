// The storage-node binary: serves a pool of KV blocks in host memory over gRPC (control)
// and UCX (data). Prints one line "storage_node ready grpc_port=<port> ..." on stdout when
// it accepts requests, and with --ready_file also writes "grpc_port=<port>" and
// "pid=<pid>" lines to that file (atomically: a temporary file, then rename; the cluster
// launcher's format); exits 0 on SIGTERM or SIGINT after a clean shutdown.
//
//   storage_node --capacity_bytes=64000000000 --model=/models/Llama-3.1-8B --dtype=bf16
//   storage_node --grpc_host=0.0.0.0 --advertise_host=10.1.2.3 --model=/models/apr-tiny ...
//   storage_node --grpc_port=0 --capacity_blocks=4096 --block_bytes=8192 --ucx_tls=tcp
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "kvstore/geometry.h"
#include "kvstore/server/storage_node.h"
#include "runtime/model_config.h"

ABSL_FLAG(std::string, grpc_host, "127.0.0.1",
          "Listen (bind) address of the control plane: 127.0.0.1 this host only (the "
          "default, for local use); 0.0.0.0 every interface (a pod). Never sent to workers.");
ABSL_FLAG(std::string, advertise_host, "",
          "The address workers reach this node's data plane at (a pod's IP): UCX's network "
          "devices are pinned to the interface holding it, so the UCX worker address the "
          "node hands out names that interface. Must be an address of this host, not a "
          "wildcard. Empty: UCX's default devices (or --ucx_net_devices).");
ABSL_FLAG(int, grpc_port, 0, "Control-plane port; 0 picks a free one (printed when ready).");
ABSL_FLAG(int64_t, capacity_blocks, 0, "Pool size in blocks (give this or --capacity_bytes).");
ABSL_FLAG(int64_t, capacity_bytes, 0,
          "Pool size in bytes, rounded down to whole blocks (give this or --capacity_blocks).");
ABSL_FLAG(int64_t, block_bytes, 0,
          "Bytes of one block (benchmarks, tests); 0 derives it from the model as "
          "2 (K, V) x 16 tokens x head_dim x element size.");
ABSL_FLAG(std::string, model, "",
          "Model folder whose config.json gives head_dim (the block geometry); give this, "
          "--head_dim or --block_bytes.");
ABSL_FLAG(int64_t, head_dim, 0,
          "Model head dimension, for a node without the model folder; 0: from --model.");
ABSL_FLAG(std::string, dtype, "bf16",
          "Element type of stored K/V: bf16, f16 or f32 (used when --block_bytes is 0).");
ABSL_FLAG(std::string, ucx_tls, "",
          "UCX transports (UCX_TLS), e.g. tcp, sm, rc,ud,sm,self; empty: UCX's default.");
ABSL_FLAG(std::string, ucx_net_devices, "",
          "UCX_NET_DEVICES, e.g. lo to keep TCP on the loopback interface; empty: UCX's "
          "default.");
ABSL_FLAG(std::string, node_name, "", "Name in logs and Health; empty: the host name.");
ABSL_FLAG(bool, populate, true, "Fault the whole pool in at start (no page faults later).");
ABSL_FLAG(int, fill_byte, -1,
          "0-255: set every byte of the pool to this value at start (benchmarks that read "
          "blocks they never wrote, so that they do not time zeros); -1: leave it as mapped.");
ABSL_FLAG(std::string, ready_file, "",
          "Once serving, write grpc_port=<port> and pid=<pid> lines to this file (the cluster "
          "launcher reads it; with --grpc_port=0 it is how the picked port is learned).");
ABSL_FLAG(double, lease_seconds, 30,
          "Free the sequences of a client (worker) not heard from for this long (it died); "
          "clients that name themselves renew with every call. 0: never.");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate of the control plane; with --tls_key and --tls_ca the node serves "
          "mutual TLS only (plaintext clients are refused). Empty: plaintext (loopback "
          "development).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA bundle that client certificates must chain to (they are required).");
ABSL_FLAG(std::string, auth_token_file, "",
          "File holding the shared bearer token every call must carry (metadata "
          "'authorization: Bearer <token>'); empty: no token check.");
ABSL_FLAG(absl::Duration, progress_spin, absl::Microseconds(500),
          "How long the UCX progress thread polls after the last event before it sleeps.");

namespace apr::kvstore {
namespace {

// head_dim from --head_dim, else from --model's config.json; no default: a wrong guess
// would give blocks the workers cannot use.
absl::StatusOr<int64_t> HeadDimFromFlags() {
  const int64_t flag = absl::GetFlag(FLAGS_head_dim);
  const std::string model = absl::GetFlag(FLAGS_model);
  if (flag < 0) return absl::InvalidArgumentError("--head_dim must be positive");
  if (flag > 0 && !model.empty()) {
    return absl::InvalidArgumentError("give --model or --head_dim, not both");
  }
  if (flag > 0) return flag;
  if (model.empty()) {
    return absl::InvalidArgumentError(
        "the block size needs the model's geometry: give --model=DIR (the folder with "
        "config.json), --head_dim or --block_bytes");
  }
  auto config = LoadModelConfig(model + "/config.json");
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat("--model: ", config.status().message()));
  }
  return config->head_dim;
}

absl::StatusOr<int64_t> BlockBytesFromFlags() {
  if (const int64_t b = absl::GetFlag(FLAGS_block_bytes); b != 0) {
    if (b < 0) return absl::InvalidArgumentError("--block_bytes must be positive");
    if (absl::GetFlag(FLAGS_head_dim) != 0 || !absl::GetFlag(FLAGS_model).empty()) {
      return absl::InvalidArgumentError(
          "--block_bytes gives the geometry itself; drop --model / --head_dim");
    }
    return b;
  }
  const std::string dtype = absl::GetFlag(FLAGS_dtype);
  int64_t element = 0;
  if (dtype == "bf16" || dtype == "f16") {
    element = 2;
  } else if (dtype == "f32") {
    element = 4;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--dtype must be bf16, f16 or f32, got '", dtype, "'"));
  }
  auto head_dim = HeadDimFromFlags();
  if (!head_dim.ok()) return head_dim.status();
  return BlockBytes(*head_dim, element);
}

absl::StatusOr<StorageNodeOptions> OptionsFromFlags() {
  StorageNodeOptions o;
  auto block_bytes_or = BlockBytesFromFlags();
  if (!block_bytes_or.ok()) return block_bytes_or.status();
  const int64_t block_bytes = *block_bytes_or;
  o.store.block_bytes = block_bytes;
  const int64_t blocks = absl::GetFlag(FLAGS_capacity_blocks);
  const int64_t bytes = absl::GetFlag(FLAGS_capacity_bytes);
  if ((blocks > 0) == (bytes > 0)) {
    return absl::InvalidArgumentError(
        "give exactly one of --capacity_blocks and --capacity_bytes (positive)");
  }
  o.store.capacity_blocks = blocks > 0 ? blocks : bytes / block_bytes;
  o.store.populate = absl::GetFlag(FLAGS_populate);
  const int port = absl::GetFlag(FLAGS_grpc_port);
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("--grpc_port ", port, " is not a port"));
  }
  o.grpc_address = absl::StrCat(absl::GetFlag(FLAGS_grpc_host), ":", port);
  o.ucx.tls = absl::GetFlag(FLAGS_ucx_tls);
  o.ucx.net_devices = absl::GetFlag(FLAGS_ucx_net_devices);
  o.advertise_host = absl::GetFlag(FLAGS_advertise_host);
  o.node_name = absl::GetFlag(FLAGS_node_name);
  o.progress_spin = absl::GetFlag(FLAGS_progress_spin);
  const double lease = absl::GetFlag(FLAGS_lease_seconds);
  if (!(lease >= 0)) return absl::InvalidArgumentError("--lease_seconds must be >= 0");
  o.lease = absl::Seconds(lease);
  o.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  o.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  o.tls.ca_file = absl::GetFlag(FLAGS_tls_ca);
  o.auth_token_file = absl::GetFlag(FLAGS_auth_token_file);
  return o;
}

// "key=value" lines, written to a temporary name and renamed so a reader never sees half.
absl::Status WriteReadyFile(const std::string& path, int port) {
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) {
    return absl::InternalError(absl::StrCat("cannot write ", tmp, ": ", std::strerror(errno)));
  }
  std::fprintf(f, "grpc_port=%d\npid=%d\n", port, static_cast<int>(getpid()));
  if (std::fclose(f) != 0 || std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

int Main() {
  // Block the shutdown signals in every thread (threads inherit the mask); one thread
  // waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto options = OptionsFromFlags();
  if (!options.ok()) {
    std::cerr << "storage_node: " << options.status() << "\n";
    return 2;
  }
  auto node = StorageNode::Start(*options);
  if (!node.ok()) {
    std::cerr << "storage_node: " << node.status() << "\n";
    return 1;
  }
  if (const int fill = absl::GetFlag(FLAGS_fill_byte); fill >= 0) {
    std::memset((*node)->store().base(), fill & 0xff, (*node)->store().region_bytes());
  }
  const BlockStoreStats s = (*node)->store().stats();
  std::printf(
      "storage_node ready grpc_port=%d pid=%d node=%s capacity_blocks=%lld block_bytes=%lld "
      "pool_bytes=%lld ucx_tls=%s ucx_net_devices=%s tls=%s auth=%s\n",
      (*node)->grpc_port(), static_cast<int>(getpid()), (*node)->node_name().c_str(),
      static_cast<long long>(s.capacity_blocks), static_cast<long long>(s.block_bytes),
      static_cast<long long>(s.capacity_bytes()),
      options->ucx.tls.empty() ? "(default)" : options->ucx.tls.c_str(),
      (*node)->ucx_net_devices().empty() ? "(default)" : (*node)->ucx_net_devices().c_str(),
      options->tls.enabled() ? "mutual" : "off",
      options->auth_token_file.empty() ? "off" : "token");
  std::fflush(stdout);
  if (const std::string ready = absl::GetFlag(FLAGS_ready_file); !ready.empty()) {
    if (absl::Status st = WriteReadyFile(ready, (*node)->grpc_port()); !st.ok()) {
      std::cerr << "storage_node: " << st << "\n";
      return 1;
    }
  }

  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    std::fprintf(stderr, "storage_node: signal %d, shutting down\n", sig);
    (*node)->Shutdown();
  });
  (*node)->Wait();
  waiter.join();
  const BlockStoreStats end = (*node)->store().stats();
  node->reset();
  std::fprintf(stderr,
               "storage_node: stopped (%lld sequences, %lld blocks in use at exit, %lld "
               "allocated since start)\n",
               static_cast<long long>(end.sequences), static_cast<long long>(end.used_blocks),
               static_cast<long long>(end.blocks_allocated_total));
  return 0;
}

}  // namespace
}  // namespace apr::kvstore

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "KV storage node: a pool of KV blocks in host memory, gRPC control plane, UCX data "
      "plane.\nUsage: storage_node --capacity_blocks=N [--model=DIR | --head_dim=D | "
      "--block_bytes=B] [--dtype=T] [--grpc_host=0.0.0.0 --advertise_host=POD_IP] "
      "[--grpc_port=0] [--ucx_tls=tcp] [--tls_cert=C --tls_key=K --tls_ca=CA] "
      "[--auth_token_file=F]");
  absl::ParseCommandLine(argc, argv);
  return apr::kvstore::Main();
}
